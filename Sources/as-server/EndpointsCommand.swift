import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicService

/// `as-server endpoints`: the NMS and TRS endpoints handed to nodes, shown or changed
/// (a service moved to another address, an NMS or relay added).
struct EndpointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoints",
        abstract: "Show, or with --nms/--trs replace, the NMS and TRS endpoints handed to nodes at login.",
        discussion: """
            Names are resolved now, as at `init`. Restart `serve` to hand out the new endpoints; nodes pick them \
            up at their next login (at start, and every loginRefreshSeconds).
            """)

    @OptionGroup var dataDir: DataDirOption
    @Option(help: "NMS endpoint (repeatable): replaces the whole list.") var nms: [String] = []
    @Option(help: "TRS endpoint (repeatable): replaces the whole list.") var trs: [String] = []

    func run() throws {
        let dir = try ASDirectory.open(at: dataDir.path)
        var settings = dir.settings
        if !nms.isEmpty || !trs.isEmpty {
            do {
                settings = try dir.updateServiceEndpoints(
                    nms: nms.isEmpty ? nil : try ServiceEndpoints.resolve(nms, "nms"),
                    trs: trs.isEmpty ? nil : try ServiceEndpoints.resolve(trs, "trs"))
            } catch let e as ConfigError {
                throw ValidationError(e.description)
            }
        }
        func list(_ e: [Endpoint]) -> String { e.isEmpty ? "none" : e.map(\.description).joined(separator: " ") }
        print("NMS  \(list(settings.nmsEndpoints))")
        print("TRS  \(list(settings.trsEndpoints))")
    }
}

/// NMS/TRS endpoints for nodes: names resolved now (both families), since the AS hands
/// addresses to nodes, which must be ones they can send to (not a wildcard, not port 0).
enum ServiceEndpoints {
    static func resolve(_ list: [String], _ flag: String) throws -> [Endpoint] {
        let resolved = try EndpointFlag.resolved(list, flag)
        for e in resolved where e.port == 0 || e.address.bytes.allSatisfy({ $0 == 0 }) {
            throw ValidationError("--\(flag): \(e) is not an address nodes can send to (a wildcard address or port 0)")
        }
        return resolved
    }
}
