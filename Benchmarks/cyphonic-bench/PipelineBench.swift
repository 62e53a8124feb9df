import ArgumentParser
import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

/// `cyphonic-bench pipeline` (issue 12): the real pipeline code — staging, the crypto
/// workers, the in-order release — between an in-process packet source (where the TUN
/// would be read) and sink (where UDP sends would go), so no TUN device, kernel stack or
/// iperf3 competes for the cores. Outbound (sealing) direction. Per packet size and
/// design: packets/s, CPU per packet (this process, user + system) and packets the sink
/// saw out of order, each design measured in every round next to `--pipeline single`.
struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "The pipeline's stages alone (in-process source and sink): single vs multi with 1 and 2 workers.")

    @Option(help: "Packet sizes in bytes (inner IPv4 packets), comma-separated.") var sizes = "64,512,1400"
    @Option(help: "Crypto worker counts for the multi-threaded pipeline, comma-separated.") var workers = "1,2"
    @Option(
        help:
            "Who reads the TUN in the multi-threaded pipeline, comma-separated: workers (the crypto workers in turn, the default), thread (a TUN reader thread, the paper's Fig. 3 as drawn)."
    ) var tunReading = "workers,thread"
    @Option(help: "Seconds per measurement.") var seconds = 2.0
    @Option(help: "Rounds (the designs alternate within each); medians are reported.") var rounds = 3
    @Option(help: "Peers the packets are spread over (one burst of 64 to each in turn).") var peers = 1
    @Option(help: "Batches in flight (the daemon's poolSize).") var pool = 24
    @Option(help: "Write every measurement as CSV to this file.") var csv: String?
    @Flag(
        help:
            "Read TCP super-packets as a TUN with offload gives them (a vnet header, up to 44 segments of the packet size in one read; sizes from 41 bytes), which the pipeline cuts into the slots it seals them in, instead of one packet per read."
    ) var offload = false

    func validate() throws {
        guard seconds > 0, rounds > 0, peers > 0, pool >= 4 else {
            throw ValidationError("--seconds, --rounds and --peers must be positive, --pool at least 4")
        }
        if offload, try parsedSizes().contains(where: { $0 < 41 }) {
            throw ValidationError("--sizes: with --offload each packet is an IPv4/TCP segment with data, from 41 bytes")
        }
        _ = try parsedSizes()
        _ = try parsedWorkers()
        _ = try parsedReadings()
    }

    func parsedReadings() throws -> [TunReading] {
        let v = tunReading.split(separator: ",").map { TunReading(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
        guard !v.isEmpty, v.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--tun-reading: comma-separated list of thread and workers, got '\(tunReading)'")
        }
        return v.compactMap { $0 }
    }

    func parsedSizes() throws -> [Int] {
        let v = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !v.isEmpty, v.allSatisfy({ (28...1400).contains($0) }) else {
            throw ValidationError("--sizes: comma-separated packet sizes from 28 to 1400 bytes, got '\(sizes)'")
        }
        return v
    }

    func parsedWorkers() throws -> [Int] {
        let v = workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !v.isEmpty, v.allSatisfy({ (1...64).contains($0) }) else {
            throw ValidationError("--workers: comma-separated worker counts from 1 to 64, got '\(workers)'")
        }
        return v
    }

    func run() throws {
        let sizeList = try parsedSizes()
        let readings = try parsedReadings()
        let modes: [PipelineDesign] =
            [PipelineDesign(mode: .single)]
            + (try parsedWorkers()).flatMap { w in readings.map { PipelineDesign(mode: .multi(workers: w), tunReading: $0) } }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print(
            "pipeline stages alone: in-process source and sink\(offload ? " (TUN reads: offload super-packets)" : ""), \(peers) peer(s), AES-256-GCM, pool \(pool) batches, \(cores) logical CPUs, \(rounds) rounds of \(seconds) s"
        )
        var rows: [PipelineMeasurement] = []
        for size in sizeList {
            for round in 1...rounds {
                for mode in modes {
                    progress("\(size) B, \(name(mode)), round \(round) of \(rounds)")
                    var m = try PipelineRun(design: mode, size: size, peers: peers, pool: pool, offload: offload).measure(seconds: seconds)
                    m.round = round
                    rows.append(m)
                }
            }
        }
        if let csv {
            var text = "size,design,round,packets_per_second,gbit_per_second,cpu_us_per_packet,cpu_cores,out_of_order,gaps,dropped\n"
            for m in rows {
                text += String(
                    format: "%d,%@,%d,%.0f,%.3f,%.4f,%.3f,%d,%d,%d\n", m.size, name(m.design), m.round, m.packetsPerSecond,
                    m.packetsPerSecond * Double(m.size) * 8 / 1e9, m.cpuMicrosPerPacket, m.cpuCores, m.outOfOrder, m.gaps, m.dropped)
            }
            try text.write(toFile: csv, atomically: true, encoding: .utf8)
        }
        print("")
        print("size  design                    Mpkt/s (min-max)        Gbit/s   x single   CPU us/pkt   cores busy   out of order   dropped")
        for size in sizeList {
            let single = rows.filter { $0.size == size && $0.design.mode == .single }
            for mode in modes {
                let rs = rows.filter { $0.size == size && $0.design == mode }
                let pps = rs.map(\.packetsPerSecond)
                // The ratio per round (same round, adjacent in time), then its median.
                let ratios = zip(rs, single).map { $0.packetsPerSecond / $1.packetsPerSecond }
                print(
                    String(
                        format: "%4d  %@ %7.3f (%.3f-%.3f) %9.2f %9.2fx %11.3f %11.2f %13d %9d", size,
                        name(mode).padding(toLength: 25, withPad: " ", startingAt: 0), medianOf(pps) / 1e6, pps.min()! / 1e6,
                        pps.max()! / 1e6, medianOf(pps) * Double(size) * 8 / 1e9, medianOf(ratios),
                        medianOf(rs.map(\.cpuMicrosPerPacket)), medianOf(rs.map(\.cpuCores)), rs.map(\.outOfOrder).reduce(0, +),
                        rs.map(\.dropped).reduce(0, +)))
            }
        }
        print("(x single: median over rounds of the ratio to --pipeline single in the same round; out of order and dropped: totals)")
    }

    func name(_ design: PipelineDesign) -> String {
        switch design.mode {
        case .single: return "single"
        case .multi(let w): return design.tunReading == .workers ? "multi-\(w)w" : "multi-\(w)w-tr"
        }
    }

    func progress(_ s: String) { FileHandle.standardError.write(Data("bench: \(s)\n".utf8)) }
}

func medianOf(_ v: [Double]) -> Double {
    guard !v.isEmpty else { return .nan }
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// A design the benchmark measures: the pipeline mode and, for multi, who reads the TUN
/// (named `multi-Nw` when the workers do, the default; `multi-Nw-tr` for a TUN reader thread).
struct PipelineDesign: Equatable {
    var mode: PipelineMode
    var tunReading: TunReading = .workers
}

/// One measurement's figures.
struct PipelineMeasurement {
    var design: PipelineDesign
    var size: Int
    var round = 0
    var packetsPerSecond: Double
    var cpuMicrosPerPacket: Double
    /// CPU seconds per second of wall time (2.0 = both cores of this machine busy).
    var cpuCores: Double
    var outOfOrder: Int
    var gaps: Int
    var dropped: UInt64
}
