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
    ],
    targets: [
        // C shims: only what Swift cannot call (macros, variadic ioctl, CMSG_*).
        .systemLibrary(name: "CCyphonicOpenSSL", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCyphonicSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "CCyphonicLinux"),

        // Libraries that mirror the architecture.
        .target(name: "CyphonicCore"),
        .target(name: "CyphonicWire", dependencies: ["CyphonicCore"]),
        .target(name: "CyphonicCrypto", dependencies: ["CyphonicCore", "CCyphonicOpenSSL"]),
        .target(name: "CyphonicPKI", dependencies: ["CyphonicCore", "CyphonicCrypto", "CCyphonicOpenSSL"]),
        .target(name: "CyphonicPosix", dependencies: ["CyphonicCore", "CCyphonicLinux"]),
        .target(name: "CyphonicDataPlane", dependencies: ["CyphonicCore", "CyphonicWire", "CyphonicCrypto", "CyphonicPosix"]),

        // Thin executables.
        .executableTarget(name: "as-server", dependencies: [
            "CyphonicCore", "CyphonicCrypto", "CyphonicPKI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "nms-server", dependencies: [
            "CyphonicCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "trs-relay", dependencies: [
            "CyphonicCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "cyphonic-node", dependencies: [
            "CyphonicCore", "CyphonicCrypto",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "cyphonic-bench", dependencies: [
            "CyphonicCrypto",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Benchmarks/cyphonic-bench"),

        // Tests.
        .testTarget(name: "CyphonicCoreTests", dependencies: ["CyphonicCore"]),
        .testTarget(name: "CyphonicWireTests", dependencies: ["CyphonicWire", "CyphonicCore"],
                    resources: [.copy("Regressions")]),
        .testTarget(name: "CyphonicCryptoTests", dependencies: ["CyphonicCrypto", "CyphonicCore"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "CyphonicPKITests", dependencies: ["CyphonicPKI", "CyphonicCrypto", "CyphonicCore"]),
        .testTarget(name: "CyphonicPosixTests", dependencies: ["CyphonicPosix", "CyphonicCore"]),
        .testTarget(name: "CyphonicDataPlaneTests", dependencies: ["CyphonicDataPlane"]),
    ]
)

// Swift 6 language mode for every target, set once.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    target.swiftSettings = settings
}
