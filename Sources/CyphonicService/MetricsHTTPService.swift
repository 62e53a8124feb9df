import CyphonicCore
import CyphonicPosix
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization

/// Serves a Prometheus registry as `GET /metrics` (text exposition format) over HTTP/1.1
/// with SwiftNIO. Runs under swift-service-lifecycle: it binds in `run()`, serves until
/// graceful shutdown, then closes. With `processMetrics` it also exports the process's
/// resident memory, CPU seconds and threads (Prometheus' conventional `process_*` names),
/// read at each scrape. `Sendable`.
public final class MetricsHTTPService: Service, Sendable {
    public let registry: PrometheusCollectorRegistry
    public let endpoint: Endpoint
    private let logger: Logger
    private let bound = Mutex<Endpoint?>(nil)
    private let beforeScrape: @Sendable () -> Void

    public init(registry: PrometheusCollectorRegistry, endpoint: Endpoint, logger: Logger, processMetrics: Bool = false) {
        self.registry = registry
        self.endpoint = endpoint
        self.logger = logger
        if processMetrics {
            let gauges = ProcessGauges(registry)
            beforeScrape = { gauges.update() }
        } else {
            beforeScrape = {}
        }
    }

    /// Where it listens, once bound (port 0 resolves to the kernel's choice).
    public var boundEndpoint: Endpoint? { bound.withLock { $0 } }

    public func run() async throws {
        let registry = self.registry
        let beforeScrape = self.beforeScrape
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry, beforeScrape: beforeScrape))
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
    let beforeScrape: @Sendable () -> Void
    private var path = ""
    private var keepAlive = false

    init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let ok = path == "/metrics" || path.hasPrefix("/metrics?")
            if ok { beforeScrape() }
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

/// The process's own figures as gauges, read from /proc when asked.
struct ProcessGauges: Sendable {
    let resident: Gauge
    let cpu: Gauge
    let threads: Gauge

    init(_ registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ unit: String, _ help: String) -> Gauge {
            registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "process", metricName: name, unitName: unit, helpText: help))
        }
        resident = gauge("resident_memory", "bytes", "Resident memory size in bytes")
        cpu = gauge("cpu_seconds", "total", "User and system CPU time in seconds")
        threads = gauge("threads", "", "OS threads of the process")
    }

    func update() {
        cpu.set(ProcessResources.cpuSeconds())
        if let m = ProcessResources.memoryAndThreads() {
            resident.set(Int64(m.residentBytes))
            threads.set(Int64(m.threads))
        }
    }
}
