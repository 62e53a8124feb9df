import CyphonicCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization

/// Serves a Prometheus registry as `GET /metrics` (text exposition format) over HTTP/1.1
/// with SwiftNIO. Runs under swift-service-lifecycle: it binds in `run()`, serves until
/// graceful shutdown, then closes. `Sendable`.
public final class MetricsHTTPService: Service, Sendable {
    public let registry: PrometheusCollectorRegistry
    public let endpoint: Endpoint
    private let logger: Logger
    private let bound = Mutex<Endpoint?>(nil)

    public init(registry: PrometheusCollectorRegistry, endpoint: Endpoint, logger: Logger) {
        self.registry = registry
        self.endpoint = endpoint
        self.logger = logger
    }

    /// Where it listens, once bound (port 0 resolves to the kernel's choice).
    public var boundEndpoint: Endpoint? { bound.withLock { $0 } }

    public func run() async throws {
        let registry = self.registry
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                }
            }
        let channel: any Channel
        do { channel = try await bootstrap.bind(host: endpoint.address.description, port: Int(endpoint.port)).get() } catch {
            let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            throw PlainError(
                "metrics: cannot listen on \(endpoint): \(reason) (another daemon there? choose another address with --metrics, or \"\" for none)")
        }
        if let port = channel.localAddress?.port {
            let actual = Endpoint(address: endpoint.address, port: UInt16(port))
            bound.withLock { $0 = actual }
            logger.info("metrics: serving http://\(actual)/metrics")
        }
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// Answers `GET /metrics` with the registry's exposition, 404 otherwise.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let registry: PrometheusCollectorRegistry
    private var path = ""
    private var keepAlive = false

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let ok = path == "/metrics" || path.hasPrefix("/metrics?")
            let body = ok ? registry.emitToBuffer() : Array("not found: try /metrics\n".utf8)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: ok ? "text/plain; version=0.0.4" : "text/plain")
            headers.add(name: "Content-Length", value: String(body.count))
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            let head = HTTPResponseHead(version: .http1_1, status: ok ? .ok : .notFound, headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            let keep = keepAlive
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keep { channel.close(promise: nil) }
            }
        }
    }
}
