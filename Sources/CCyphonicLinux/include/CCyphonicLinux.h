// CCyphonicLinux: Linux calls Swift cannot make itself (variadic ioctl, CMSG_* macros,
// kernel constants newer than Debian's headers). Every function returns -1 and leaves
// errno set on failure, like the syscall it wraps.
#ifndef CCYPHONIC_LINUX_H
#define CCYPHONIC_LINUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/// Opens /dev/net/tun and attaches interface `name` (may be "" for a kernel-chosen name).
/// `vnet_hdr` asks for IFF_VNET_HDR (offload metadata before each packet).
/// On success writes the interface name (IFNAMSIZ bytes) to `name_out` and returns the fd.
int ccy_tun_open(const char *name, int vnet_hdr, char *name_out);

/// TUNSETOFFLOAD with TUN_F_* flags; TUN_F_USO4/6 are defined here (Debian's header lacks them).
int ccy_tun_set_offload(int fd, unsigned int flags);
/// TUNSETVNETHDRSZ.
int ccy_tun_set_vnet_hdr_size(int fd, int size);

#define CCY_TUN_F_CSUM 0x01
#define CCY_TUN_F_TSO4 0x02
#define CCY_TUN_F_TSO6 0x04
#define CCY_TUN_F_TSO_ECN 0x08
#define CCY_TUN_F_USO4 0x20
#define CCY_TUN_F_USO6 0x40

/// One datagram of a batch: buffer, length (in: capacity for receive, payload length for
/// send; out: received length), peer address, and for receive the GRO segment size (0 if none).
typedef struct {
    void *buffer;
    size_t length;
    struct sockaddr_storage address;
    socklen_t address_length;
    uint16_t gso_size; // send: UDP_SEGMENT size (0 = none); receive: UDP_GRO size seen
} ccy_datagram;

/// recvmmsg over `count` datagrams; returns how many were filled, or -1.
/// `flags` as for recvmmsg (MSG_DONTWAIT ...). Reads UDP_GRO control messages when present.
int ccy_recv_batch(int fd, ccy_datagram *datagrams, unsigned int count, int flags);

/// sendmmsg over `count` datagrams; returns how many were sent, or -1.
/// A datagram with gso_size > 0 carries a UDP_SEGMENT control message.
int ccy_send_batch(int fd, ccy_datagram *datagrams, unsigned int count, int flags);

/// Sends the bytes of `iov[0..<count]` to one address. With `segment_size` > 0 they go as
/// one UDP GSO send (sendmsg + UDP_SEGMENT): the kernel cuts the payload into datagrams of
/// `segment_size` bytes (the last may be shorter), so every iovec but the last must be
/// exactly `segment_size` long. With 0, each iovec is its own datagram (one sendmmsg,
/// repeated until all are sent). Returns 0, or -1 with errno (EIO/EINVAL: no GSO here).
int ccy_send_segments(int fd, const struct sockaddr_storage *address, socklen_t address_length,
                      struct iovec *iov, unsigned int count, uint16_t segment_size);

/// setsockopt(SOL_UDP, UDP_GRO, on).
int ccy_udp_enable_gro(int fd, int on);

/// fcntl(F_SETFL, O_NONBLOCK) on or off (fcntl is variadic).
int ccy_set_nonblocking(int fd, int on);

/// glibc's malloc statistics (mallinfo2; malloc.h is not in Swift's Glibc module), bytes:
/// `arena` taken from the OS with brk/sbrk (main and thread arenas), `mmapped` in
/// mmap'd chunks, `in_use` allocated and not freed (including mmapped), `free` held in
/// the arenas' free lists (retained, not returned to the OS).
typedef struct {
    uint64_t arena;
    uint64_t mmapped;
    uint64_t in_use;
    uint64_t free;
} ccy_malloc_stats;

ccy_malloc_stats ccy_malloc_statistics(void);

/// Names the calling thread (pthread_setname_np needs _GNU_SOURCE; at most 15 bytes kept).
void ccy_set_thread_name(const char *name);

#endif
