import CyphonicCore
import CyphonicDNS
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The CYPHONIC resolver (DESIGN §2): a DNS server on UDP and TCP for the node's own
/// applications. A name under the overlay domain is resolved through the NMS and its
/// A/AAAA answer (the peer's virtual IPs) is given only once the tunnel is up, so the
/// first packet already has a path; a query while that set-up is in flight joins it;
/// an unknown name is NXDOMAIN, a refused or failed set-up SERVFAIL (counted by
/// reason). Other names go to the upstream resolver, or are REFUSED without one.
/// Malformed queries get FORMERR when they have a header, else a counted drop. Runs on
/// SwiftNIO's event loops; lookups never block them. `Sendable`.
public final class NodeResolver: Sendable {
    /// Figures for status and metrics.
    public struct Counters: Codable, Sendable, Equatable {
        public var queries: UInt64 = 0
        public var answered: UInt64 = 0
        public var nxdomain: UInt64 = 0
        public var servfail: UInt64 = 0
        public var refused: UInt64 = 0
        public var formerr: UInt64 = 0
        public var notimp: UInt64 = 0
        public var forwarded: UInt64 = 0
        public var upstreamTimeouts: UInt64 = 0
        public var dropped: UInt64 = 0
        public var tcpRefused: UInt64 = 0
        /// SERVFAIL answers by reason (not_registered, forbidden, timeout, ...).
        public var failures: [String: UInt64] = [:]
    }

    enum Transport { case udp, tcp }

    let config: NodeConfig.Resolver
    /// The overlay domain, lower case, no trailing dot.
    public let domain: String
    let ownName: String
    let ownAddresses: [IPAddress]
    let signaling: NodeSignaling?
    let logger: Logger
    let counters = Mutex(Counters())
    let channels = Mutex<[any Channel]>([])
    let tcpConnections = Atomic<Int>(0)
    let upstream: UpstreamForwarder?
    let failureLog = Mutex((second: 0.0, lines: 0))
    /// Why it does not serve, if it does not (for status).
    let problem = Mutex<String?>(nil)

    init(config: NodeConfig.Resolver, domain: String, ownName: String, ownAddresses: [IPAddress], signaling: NodeSignaling?, logger: Logger) {
        self.config = config
        self.domain = domain.lowercased()
        self.ownName = ownName.lowercased()
        self.ownAddresses = ownAddresses
        self.signaling = signaling
        self.logger = logger
        let upstreams = config.upstream.compactMap(Endpoint.init)
        upstream = upstreams.isEmpty ? nil : UpstreamForwarder(servers: upstreams, timeoutSeconds: config.timeoutSeconds)
    }

    /// Binds UDP and TCP on every listen endpoint. Throws naming the endpoint that could
    /// not be bound (the daemon runs on without a resolver then, and says so in status).
    func start() throws {
        let group = MultiThreadedEventLoopGroup.singleton
        var bound: [any Channel] = []
        do {
            try upstream?.start(group: group, resolver: self)
            for text in config.listen {
                let e = Endpoint(text)!
                let udp = try DatagramBootstrap(group: group)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DNSUDPHandler(resolver: self)) }
                    }
                    .bind(host: e.address.description, port: Int(e.port)).wait()
                bound.append(udp)
                let tcp = try ServerBootstrap(group: group)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(10)))
                            try channel.pipeline.syncOperations.addHandler(DNSTCPHandler(resolver: self))
                        }
                    }
                    .bind(host: e.address.description, port: Int(e.port)).wait()
                bound.append(tcp)
            }
        } catch {
            for c in bound { try? c.close().wait() }
            upstream?.stop()
            let why = "cannot serve DNS on \(config.listen.joined(separator: ", ")): \(error)"
            problem.withLock { $0 = why }
            throw ResolverError(description: why)
        }
        channels.withLock { $0 = bound }
        logger.info(
            "resolver: serving DNS on \(config.listen.joined(separator: ", ")) (udp, tcp) for *.\(domain); other names \(upstream == nil ? "refused" : "to \(config.upstream.joined(separator: ", "))")"
        )
    }

    func stop() {
        let all = channels.withLock { c -> [any Channel] in
            defer { c = [] }
            return c
        }
        for c in all { try? c.close().wait() }
        upstream?.stop()
    }

    func count(_ body: (inout Counters) -> Void) { counters.withLock { body(&$0) } }

    /// Answers one query (any thread); `reply` gets the response, or is not called for
    /// a counted drop (nothing to answer).
    func answer(_ bytes: [UInt8], transport: Transport, reply: @escaping @Sendable ([UInt8]) -> Void) {
        count { $0.queries += 1 }
        let query: DNSQuery
        do { query = try DNSQuery.parse(bytes) } catch {
            if case .unsupportedOpcode = error, let r = DNSResponse.errorResponse(for: bytes, rcode: .notImp) {
                count { $0.notimp += 1 }
                return reply(r)
            }
            guard let r = DNSResponse.formatError(for: bytes) else { return count { $0.dropped += 1 } }
            count { $0.formerr += 1 }
            return reply(r)
        }
        let limit = transport == .tcp ? DNSQuery.maxMessageSize : max(512, min(Int(query.ednsUDPSize ?? 512), Int(DNSResponse.ednsUDPSize)))
        let name = query.question.name
        let ttl = UInt32(config.ttlSeconds)
        @Sendable func respond(_ rcode: DNSRcode, _ addresses: [IPAddress] = []) {
            let type = query.question.type
            let answers: [DNSAnswer] = addresses.compactMap { a in
                if a.isIPv4, type == DNSRecordType.a || type == DNSRecordType.any { return .a(a.bytes) }
                if !a.isIPv4, type == DNSRecordType.aaaa || type == DNSRecordType.any { return .aaaa(a.bytes) }
                return nil
            }
            count {
                switch rcode {
                case .nxDomain: $0.nxdomain += 1
                case .servFail: $0.servfail += 1
                case .refused: $0.refused += 1
                default: $0.answered += 1
                }
            }
            reply(DNSResponse.make(for: query, rcode: rcode, answers: answers, ttl: ttl, limit: limit))
        }
        guard name == domain || name.hasSuffix("." + domain) else {
            guard let upstream else { return respond(.refused) }
            count { $0.forwarded += 1 }
            return upstream.forward(bytes, query: query, reply: reply)
        }
        let addressTypes = [DNSRecordType.a, DNSRecordType.aaaa, DNSRecordType.any]
        guard query.question.qclass == 1 || query.question.qclass == 255, addressTypes.contains(query.question.type), name != domain else {
            return respond(.noError)  // NODATA: overlay names carry only addresses
        }
        if name == ownName { return respond(.noError, ownAddresses) }
        guard let signaling else { return fail(query, "no NMS configured", reason: "not_registered", respond) }
        signaling.requestTunnel(to: name, deadline: monotonicSeconds() + config.timeoutSeconds) { [self] result in
            switch result {
            case .up(let addresses): respond(.noError, addresses)
            case .notFound: respond(.nxDomain)
            case .failed(let why, let reason): fail(query, why, reason: reason, respond)
            }
        }
    }

    private func fail(_ query: DNSQuery, _ why: String, reason: String, _ respond: @Sendable (DNSRcode, [IPAddress]) -> Void) {
        count { $0.failures[reason, default: 0] += 1 }
        let now = monotonicSeconds()
        let log = failureLog.withLock { s -> Bool in
            if now - s.second >= 1 {
                s.second = now
                s.lines = 0
            }
            s.lines += 1
            return s.lines <= 5
        }
        if log { logger.warning("resolver: SERVFAIL for \(query.question.name): \(why)") }
        respond(.servFail, [])
    }

    /// What status shows.
    public func status() -> ResolverStatus {
        ResolverStatus(
            listen: config.listen, domain: domain, serving: problem.withLock { $0 } == nil && !channels.withLock { $0.isEmpty },
            problem: problem.withLock { $0 }, upstream: config.upstream, counters: counters.withLock { $0 })
    }
}

/// The resolver as `cyphonic-node status` shows it.
public struct ResolverStatus: Codable, Sendable {
    public var listen: [String]
    public var domain: String
    public var serving: Bool
    public var problem: String?
    public var upstream: [String]
    public var counters: NodeResolver.Counters
}

/// The resolver could not start; says where and why.
struct ResolverError: Error, CustomStringConvertible {
    let description: String
}
