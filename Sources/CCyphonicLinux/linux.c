#define _GNU_SOURCE
#include "CCyphonicLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif

int ccy_tun_open(const char *name, int vnet_hdr, char *name_out) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    if (name != NULL) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (name_out != NULL) memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
    return fd;
}

int ccy_tun_set_offload(int fd, unsigned int flags) { return ioctl(fd, TUNSETOFFLOAD, flags); }

int ccy_tun_set_vnet_hdr_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }

int ccy_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

int ccy_udp_enable_gro(int fd, int on) { return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)); }

enum { CCY_MAX_BATCH = 128 };
#define CCY_CMSG_SPACE CMSG_SPACE(sizeof(uint16_t))

int ccy_recv_batch(int fd, ccy_datagram *d, unsigned int count, int flags) {
    if (count > CCY_MAX_BATCH) count = CCY_MAX_BATCH;
    struct mmsghdr msgs[CCY_MAX_BATCH];
    struct iovec iov[CCY_MAX_BATCH];
    union { char buf[CCY_CMSG_SPACE]; struct cmsghdr align; } control[CCY_MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        iov[i].iov_base = d[i].buffer;
        iov[i].iov_len = d[i].length;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &d[i].address;
        msgs[i].msg_hdr.msg_namelen = sizeof(d[i].address);
        msgs[i].msg_hdr.msg_control = control[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(control[i].buf);
    }
    int n;
    do { n = recvmmsg(fd, msgs, count, flags, NULL); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        d[i].length = msgs[i].msg_len;
        d[i].address_length = msgs[i].msg_hdr.msg_namelen;
        d[i].gso_size = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                int size = 0;
                memcpy(&size, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0) < sizeof(int) ? c->cmsg_len - CMSG_LEN(0) : sizeof(int));
                d[i].gso_size = (uint16_t)size;
            }
        }
    }
    return n;
}

int ccy_send_batch(int fd, ccy_datagram *d, unsigned int count, int flags) {
    if (count > CCY_MAX_BATCH) count = CCY_MAX_BATCH;
    struct mmsghdr msgs[CCY_MAX_BATCH];
    struct iovec iov[CCY_MAX_BATCH];
    union { char buf[CCY_CMSG_SPACE]; struct cmsghdr align; } control[CCY_MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        iov[i].iov_base = d[i].buffer;
        iov[i].iov_len = d[i].length;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &d[i].address;
        msgs[i].msg_hdr.msg_namelen = d[i].address_length;
        if (d[i].gso_size > 0) {
            msgs[i].msg_hdr.msg_control = control[i].buf;
            msgs[i].msg_hdr.msg_controllen = CCY_CMSG_SPACE;
            struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = d[i].gso_size;
            memcpy(CMSG_DATA(c), &size, sizeof(size));
        }
    }
    int n;
    do { n = sendmmsg(fd, msgs, count, flags); } while (n < 0 && errno == EINTR);
    return n;
}

int ccy_send_segments(int fd, const struct sockaddr_storage *address, socklen_t address_length,
                      struct iovec *iov, unsigned int count, uint16_t segment_size) {
    if (count == 0) return 0;
    if (segment_size > 0) {
        union { char buf[CCY_CMSG_SPACE]; struct cmsghdr align; } control;
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_name = (void *)address;
        msg.msg_namelen = address_length;
        msg.msg_iov = iov;
        msg.msg_iovlen = count;
        msg.msg_control = control.buf;
        msg.msg_controllen = CCY_CMSG_SPACE;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(c), &segment_size, sizeof(segment_size));
        ssize_t n;
        do { n = sendmsg(fd, &msg, 0); } while (n < 0 && errno == EINTR);
        return n < 0 ? -1 : 0;
    }
    if (count > CCY_MAX_BATCH) count = CCY_MAX_BATCH;
    struct mmsghdr msgs[CCY_MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (void *)address;
        msgs[i].msg_hdr.msg_namelen = address_length;
    }
    unsigned int sent = 0;
    while (sent < count) {
        int n;
        do { n = sendmmsg(fd, msgs + sent, count - sent, 0); } while (n < 0 && errno == EINTR);
        if (n < 0) return -1;
        sent += (unsigned int)n;
    }
    return 0;
}

ccy_malloc_stats ccy_malloc_statistics(void) {
    struct mallinfo2 m = mallinfo2();
    ccy_malloc_stats s = {m.arena, m.hblkhd, m.uordblks + m.hblkhd, m.fordblks};
    return s;
}

void ccy_set_thread_name(const char *name) {
    char short_name[16];
    strncpy(short_name, name, 15);
    short_name[15] = 0;
    pthread_setname_np(pthread_self(), short_name);
}
