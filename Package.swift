// swift-tools-version:6.0
// CYPHONIC in Swift: the package. Arrows point one way:
// C shims -> Core/Wire/Crypto/PKI/Posix -> (data plane, program libraries) -> executables.
import PackageDescription

let package = Package(
    name: "cyphonic-swift",
    products: [
        .executable(name: "as-server", targets: ["as-server"]),
        .executable(name: "nms-server", targets: ["nms-server"]),
        .executable(name: "trs-relay", targets: ["trs-relay"]),
        .executable(name: "cyphonic-node", targets: ["cyphonic-node"]),
        .executable(name: "cyphonic-bench", targets: ["cyphonic-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        // The AS's second storage backend (several AS replicas on one PostgreSQL).
        .package(url: "https://github.com/vapor/postgres-nio", exact: "1.33.2"),
    ],
    targets: [
        // C shims: only what Swift cannot call (macros, variadic ioctl, CMSG_*).
        .systemLibrary(
            name: "CCyphonicOpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CCyphonicSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "CCyphonicLinux"),
        // Test support only: counts malloc calls per thread (interposes malloc).
        .target(name: "CCyphonicMallocCounter"),

        // Libraries that mirror the architecture.
        .target(name: "CyphonicCore"),
        .target(name: "CyphonicWire", dependencies: ["CyphonicCore"]),
        .target(name: "CyphonicCrypto", dependencies: ["CyphonicCore", "CCyphonicOpenSSL"]),
        .target(name: "CyphonicPKI", dependencies: ["CyphonicCore", "CyphonicCrypto", "CCyphonicOpenSSL"]),
        .target(name: "CyphonicPosix", dependencies: ["CyphonicCore", "CCyphonicLinux"]),
        .target(name: "CyphonicDataPlane", dependencies: ["CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPosix"]),
        // Node <-> service sessions (Noise XX + certificates), pure state machines.
        .target(
            name: "CyphonicSignaling",
            dependencies: [
                "CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPKI", "CyphonicDataPlane", "CyphonicPosix", "CyphonicService",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // PostgreSQL for the services that run as several replicas (AS store, NMS directory).
        .target(
            name: "CyphonicPostgres",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]),
        // The CYPHONIC resolver's DNS message codec (pure, fuzzed).
        .target(name: "CyphonicDNS"),
        // What every program runs on: metrics over HTTP, logging, receive threads.
        .target(
            name: "CyphonicService",
            dependencies: [
                "CyphonicCore", "CyphonicPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // One library per program.
        .target(
            name: "CyphonicAS",
            dependencies: [
                "CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPKI", "CyphonicPosix", "CyphonicSignaling",
                "CyphonicService", "CCyphonicSQLite", "CyphonicPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .target(
            name: "CyphonicNMS",
            dependencies: [
                "CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPKI", "CyphonicPosix", "CyphonicSignaling",
                "CyphonicService", "CyphonicPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .target(
            name: "CyphonicTRS",
            dependencies: [
                "CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPKI", "CyphonicPosix", "CyphonicSignaling",
                "CyphonicService",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .target(
            name: "CyphonicNode",
            dependencies: [
                "CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPKI", "CyphonicPosix", "CyphonicSignaling",
                "CyphonicDataPlane", "CyphonicService", "CyphonicDNS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),

        // Thin executables.
        .executableTarget(
            name: "as-server",
            dependencies: [
                "CyphonicCore", "CyphonicCrypto", "CyphonicPKI", "CyphonicAS", "CyphonicService", "CyphonicSignaling", "CyphonicPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "nms-server",
            dependencies: [
                "CyphonicCore", "CyphonicCrypto", "CyphonicPKI", "CyphonicNMS", "CyphonicService", "CyphonicPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "trs-relay",
            dependencies: [
                "CyphonicCore", "CyphonicTRS", "CyphonicService", "CyphonicPKI", "CyphonicSignaling", "CyphonicPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "cyphonic-node",
            dependencies: [
                "CyphonicCore", "CyphonicCrypto", "CyphonicPKI", "CyphonicNode", "CyphonicService", "CyphonicSignaling", "CyphonicPosix",
                "CyphonicDataPlane",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "cyphonic-bench",
            dependencies: [
                "CyphonicCrypto", "CyphonicAS", "CyphonicNode", "CyphonicCore", "CyphonicService", "CyphonicNMS",
                "CyphonicSignaling", "CyphonicPKI", "CyphonicWire", "CyphonicDataPlane", "CyphonicPosix", "CyphonicPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ], path: "Benchmarks/cyphonic-bench"),

        // Tests.
        .target(name: "CyphonicTestSupport", path: "Tests/CyphonicTestSupport"),
        .testTarget(name: "CyphonicCoreTests", dependencies: ["CyphonicCore"]),
        .testTarget(
            name: "CyphonicWireTests", dependencies: ["CyphonicWire", "CyphonicCore"],
            resources: [.copy("Regressions")]),
        .testTarget(
            name: "CyphonicCryptoTests", dependencies: ["CyphonicCrypto", "CyphonicCore"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "CyphonicPKITests", dependencies: ["CyphonicPKI", "CyphonicCrypto", "CyphonicCore", "CyphonicTestSupport"]),
        .testTarget(name: "CyphonicPosixTests", dependencies: ["CyphonicPosix", "CyphonicCore"]),
        .testTarget(
            name: "CyphonicDataPlaneTests",
            dependencies: [
                "CyphonicDataPlane", "CyphonicCrypto", "CyphonicCore", "CyphonicPosix", "CyphonicWire", "CCyphonicMallocCounter",
            ]),
        .testTarget(
            name: "CyphonicSignalingTests", dependencies: ["CyphonicSignaling", "CyphonicPKI", "CyphonicCrypto", "CyphonicWire", "CyphonicCore"]),
        .testTarget(
            name: "CyphonicNodeTests",
            dependencies: [
                "CyphonicNode", "CyphonicDataPlane", "CyphonicPKI", "CyphonicCrypto", "CyphonicCore", "CyphonicWire", "CyphonicSignaling",
                "CyphonicPosix", "CyphonicTestSupport", .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "CyphonicDNSTests", dependencies: ["CyphonicDNS"]),
        .testTarget(
            name: "CyphonicNMSTests",
            dependencies: [
                "CyphonicNMS", "CyphonicPostgres", "CyphonicSignaling", "CyphonicPKI", "CyphonicCrypto", "CyphonicWire", "CyphonicCore",
                "CyphonicPosix",
                "CyphonicTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "CyphonicTRSTests",
            dependencies: [
                "CyphonicTRS", "CyphonicNMS", "CyphonicSignaling", "CyphonicPKI", "CyphonicCrypto", "CyphonicWire", "CyphonicCore", "CyphonicPosix",
                "CyphonicTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "CyphonicASTests",
            dependencies: [
                "CyphonicAS", "CyphonicPostgres", "CyphonicNode", "CyphonicSignaling", "CyphonicPKI", "CyphonicCrypto", "CyphonicWire",
                "CyphonicPosix",
                "CyphonicService", "CyphonicCore", "CyphonicTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
    ]
)

// Swift 6 language mode for every target, set once.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    target.swiftSettings = settings
}
