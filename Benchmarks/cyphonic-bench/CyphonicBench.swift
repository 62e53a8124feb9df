import ArgumentParser
import CyphonicCrypto
import Foundation

/// `cyphonic-bench`: micro-benchmarks of the stack, each printed next to a baseline
/// measured in the same run (the machine is noisy, so only ratios are meaningful).
@main
struct CyphonicBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cyphonic-bench",
        abstract: "Benchmarks of CYPHONIC-Swift against baselines measured in the same run.",
        subcommands: [CryptoBench.self, LoginBench.self, NMSBench.self, ForgeRelay.self, PipelineBench.self, PeersBench.self])
}

struct CryptoBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crypto",
        abstract: "AEAD seal/open throughput on one core, next to `openssl speed -evp` for the same cipher.")

    @Option(help: "Packet size in bytes.") var size = 1400
    @Option(help: "Seconds per measurement.") var seconds = 2.0
    @Option(help: "Interleaved rounds; the median is reported.") var rounds = 3
    @Option(help: "Path of the openssl binary for the baseline.") var openssl = "/usr/bin/openssl"

    func run() throws {
        print("AEAD on one core, \(size)-byte packets, 16-byte AAD, median of \(rounds) interleaved rounds of \(seconds) s")
        print("baseline: `openssl speed -evp CIPHER` (streaming EVP_EncryptUpdate) and `-aead` (init+AAD+update+final+tag per packet)")
        print("")
        let header =
            "cipher".padding(toLength: 18, withPad: " ", startingAt: 0) + "op     ours Gbit/s   Mpkt/s   openssl-evp   ratio   openssl-aead   ratio"
        print(header)
        for algorithm in AEADAlgorithm.allCases {
            let name = algorithm == .aes256gcm ? "aes-256-gcm" : "chacha20-poly1305"
            for op in ["seal", "open"] {
                var ours: [Double] = []
                var evp: [Double] = []
                var aead: [Double] = []
                for round in 0..<rounds {
                    progress("measuring \(name) \(op), round \(round + 1)/\(rounds)")
                    ours.append(try measure(algorithm, seal: op == "seal"))
                    evp.append(try opensslSpeed(name, aead: false, decrypt: op == "open"))
                    aead.append(try opensslSpeed(name, aead: true, decrypt: op == "open"))
                }
                progress(nil)
                let o = medianOf(ours)
                let e = medianOf(evp)
                let a = medianOf(aead)
                let gbit = { (bytesPerSecond: Double) in bytesPerSecond * 8 / 1e9 }
                print(
                    name.padding(toLength: 18, withPad: " ", startingAt: 0) + op.padding(toLength: 7, withPad: " ", startingAt: 0)
                        + String(
                            format: "%10.2f %9.3f %12.2f %8.2f %13.2f %8.2f", gbit(o), o / Double(size) / 1e6,
                            gbit(e), e > 0 ? o / e : 0, gbit(a), a > 0 ? o / a : 0))
            }
        }
    }

    /// Progress on stderr: rewritten in place on a terminal, one line each otherwise.
    func progress(_ text: String?) {
        let tty = isatty(2) == 1
        let line: String
        if let text { line = tty ? "\r\u{1B}[K\(text)" : "\(text)\n" } else { line = tty ? "\r\u{1B}[K" : "" }
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Bytes per second of our in-place seal or open on one pre-allocated buffer.
    func measure(_ algorithm: AEADAlgorithm, seal: Bool) throws -> Double {
        let key = try AEADKey(algorithm, key: try SecureRandom.bytes(32))
        let aad = [UInt8](repeating: 7, count: 16)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 16, alignment: 64)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xa5)
        // For open, keep one sealed packet and re-open a copy of it each time.
        let sealed = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 16, alignment: 64)
        defer { sealed.deallocate() }
        sealed.initializeMemory(as: UInt8.self, repeating: 0xa5)
        try aad.withUnsafeBytes { a in _ = try key.seal(nonce: 1, aad: a, buffer: sealed, plaintextCount: size) }
        let deadline = now() + seconds
        var packets = 0
        var nonce: UInt64 = 0
        try aad.withUnsafeBytes { a in
            while true {
                for _ in 0..<256 {
                    if seal {
                        _ = try key.seal(nonce: nonce, aad: a, buffer: buffer, plaintextCount: size)
                        nonce &+= 1
                    } else {
                        buffer.copyMemory(from: UnsafeRawBufferPointer(sealed))
                        _ = try key.open(nonce: 1, aad: a, buffer: buffer, ciphertextCount: size + 16)
                    }
                }
                packets += 256
                if now() >= deadline { break }
            }
        }
        return Double(packets * size) / seconds
    }

    func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Bytes per second reported by `openssl speed -mr` for one size.
    func opensslSpeed(_ cipher: String, aead: Bool, decrypt: Bool) throws -> Double {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: openssl)
        var args = ["speed"]
        if aead { args.append("-aead") }
        if decrypt { args.append("-decrypt") }
        args += ["-evp", cipher, "-bytes", String(size), "-seconds", String(max(1, Int(seconds.rounded()))), "-mr"]
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        for line in out.split(separator: "\n") where line.hasPrefix("+F:") {
            if let v = line.split(separator: ":").last.flatMap({ Double($0) }) { return v }
        }
        return 0
    }
}
