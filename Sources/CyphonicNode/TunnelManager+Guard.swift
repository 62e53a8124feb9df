import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

// The handshake guard in front of tunnel requests (cookies, limits), and the
// initiator's retry when a responder asks for a cookie.
extension TunnelManager {
    /// Initiator: the responder asked for proof of our address; repeat message 1 (a
    /// fresh one, same index) with its cookie. Once per initiation.
    func retry(localIndex: UInt32, cookie: [UInt8], from: SocketAddress) {
        // Compared as endpoints: a dual-stack socket may report the same IPv4 peer as a
        // v4-mapped IPv6 address.
        guard let pending = sync.withLock({ initiations[localIndex] }), !pending.cookieUsed,
            pending.endpoint.endpoint == from.endpoint
        else {
            stats.badControl.add()
            return
        }
        stats.cookieRetries.add()
        initiate(fqdn: pending.fqdn, endpoint: pending.endpoint, cookie: cookie, index: localIndex)
    }

    /// Where message 1's Noise bytes start in a TunnelRequest (header, sender index, path id).
    static let requestNoiseOffset = Header.size + 4 + 8

    /// The handshake guard on a raw TunnelRequest: true to go on with the handshake; else
    /// the cookie reply (to an unverified source) is sent or the request dropped here.
    func admit(_ bytes: UnsafeRawBufferPointer, from: SocketAddress, verified: Bool) -> Bool {
        guard var source = from.endpoint else {
            stats.badControl.add()
            return false
        }
        // Every relayed peer comes from the relay's address: there the guard keys its
        // cookies and limits by the path (the relay forwards a request only from the end
        // the path's authorization bound), so one relayed peer cannot use up the others'.
        if signaling?.isRelay(source) == true {
            var synthetic: [UInt8] = [0xfd, 0x52, 0x45, 0x4c, 0, 0, 0, 0]
            synthetic += Array(bytes[(Header.size + 4)..<(Header.size + 12)])
            source = Endpoint(address: IPAddress(bytes: synthetic)!, port: source.port)
        }
        let o = Self.requestNoiseOffset + 32
        let cookie =
            bytes.count >= o + HandshakeGuard.cookieSize
            ? Array(bytes[o..<(o + HandshakeGuard.cookieSize)]) : nil
        let senderIndex = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: Header.size, as: UInt32.self))
        // `verified` (the source is a peer's endpoint) only chose the queue: a source
        // address can be forged, so it never replaces the cookie.
        switch handshakeGuard.check(
            source: source, requestSize: bytes.count, replySize: responseSize,
            cookie: cookie?.allSatisfy({ $0 == 0 }) == false ? cookie : nil)
        {
        case .cookie(let c):
            if let reply = try? Datagram(.cookieReply(cookie: c), receiverIndex: senderIndex).encode() { send(reply, to: from) }
            stats.cookiesSent.add()
            return false
        case .drop:
            stats.handshakesThrottled.add()
            return false
        case .proceed:
            return true
        }
    }
}
