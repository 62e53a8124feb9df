import CyphonicCore
import CyphonicDNS
import NIOCore
import NIOPosix
import Synchronization

/// Forwards queries for names outside the overlay to the upstream resolver over UDP,
/// each under a fresh random id, and maps the answer back to the client's id. An answer
/// is taken only from an upstream server, with an id in flight, echoing the very
/// question asked (a spoofer must guess id and question). Upstreams of the first one's
/// address family are used (one socket). Unanswered queries get SERVFAIL after the
/// timeout; at most 4096 in flight (beyond that SERVFAIL at once). `Sendable`.
final class UpstreamForwarder: Sendable {
    struct Pending: Sendable {
        let originalID: UInt16
        let query: DNSQuery
        let reply: @Sendable ([UInt8]) -> Void
        let sent: Double
    }

    let servers: [Endpoint]
    let timeout: Double
    let pending = Mutex<[UInt16: Pending]>([:])
    let channel = Mutex<(any Channel)?>(nil)
    let sweeper = Mutex<RepeatedTask?>(nil)
    static let maxInFlight = 4096

    init(servers: [Endpoint], timeoutSeconds: Double) {
        self.servers = servers.filter { $0.address.isIPv4 == servers[0].address.isIPv4 }
        timeout = timeoutSeconds
    }

    func start(group: MultiThreadedEventLoopGroup, resolver: NodeResolver) throws {
        let any = servers[0].address.isIPv4 ? "0.0.0.0" : "::"
        let c = try DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UpstreamHandler(forwarder: self)) }
            }
            .bind(host: any, port: 0).wait()
        channel.withLock { $0 = c }
        let task = c.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .milliseconds(500)) { [self] _ in
            sweep(resolver: resolver)
        }
        sweeper.withLock { $0 = task }
    }

    func stop() {
        sweeper.withLock { $0?.cancel() }
        let c = channel.withLock { c -> (any Channel)? in
            defer { c = nil }
            return c
        }
        try? c?.close().wait()
    }

    func forward(_ bytes: [UInt8], query: DNSQuery, reply: @escaping @Sendable ([UInt8]) -> Void) {
        guard let c = channel.withLock({ $0 }) else {
            return reply(DNSResponse.make(for: query, rcode: .servFail, answers: [], ttl: 0, limit: 512))
        }
        let id = pending.withLock { p -> UInt16? in
            guard p.count < Self.maxInFlight else { return nil }
            var id = UInt16.random(in: 0...UInt16.max)
            while p[id] != nil { id = UInt16.random(in: 0...UInt16.max) }
            p[id] = Pending(originalID: query.id, query: query, reply: reply, sent: monotonicSeconds())
            return id
        }
        guard let id else { return reply(DNSResponse.make(for: query, rcode: .servFail, answers: [], ttl: 0, limit: 512)) }
        let server = servers[Int(id) % servers.count]
        guard let address = try? SocketAddress(ipAddress: server.address.description, port: Int(server.port)) else { return }
        let out = DNSMessage.replacingID(bytes, with: id)
        c.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: c.allocator.buffer(bytes: out)), promise: nil)
    }

    /// An answer from an upstream: back to the client with its own id.
    func received(_ bytes: [UInt8], from: SocketAddress) {
        guard DNSMessage.isResponse(bytes), let id = DNSMessage.id(of: bytes),
            servers.contains(where: { $0.address.description == from.ipAddress && Int($0.port) == from.port }),
            let p = pending.withLock({ p -> Pending? in
                guard let q = p[id], Self.echoes(bytes, q.query) else { return nil }
                return p.removeValue(forKey: id)
            })
        else { return }
        p.reply(DNSMessage.replacingID(bytes, with: p.originalID))
    }

    /// Whether the answer's question section is the query's (name, case-insensitively; type; class).
    static func echoes(_ answer: [UInt8], _ query: DNSQuery) -> Bool {
        var asQuery = answer
        asQuery[2] &= 0x7f  // clear QR, so the codec reads the question
        guard let q = try? DNSQuery.parse(asQuery) else { return false }
        return q.question == query.question
    }

    private func sweep(resolver: NodeResolver) {
        let now = monotonicSeconds()
        let late = pending.withLock { p -> [Pending] in
            let late = p.filter { now - $0.value.sent > timeout }
            for k in late.keys { p.removeValue(forKey: k) }
            return Array(late.values)
        }
        guard !late.isEmpty else { return }
        resolver.count {
            $0.upstreamTimeouts += UInt64(late.count)
            $0.servfail += UInt64(late.count)
        }
        for p in late { p.reply(DNSResponse.make(for: p.query, rcode: .servFail, answers: [], ttl: 0, limit: 512)) }
    }
}

final class UpstreamHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let forwarder: UpstreamForwarder

    init(forwarder: UpstreamForwarder) { self.forwarder = forwarder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        forwarder.received(Array(envelope.data.readableBytesView), from: envelope.remoteAddress)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
