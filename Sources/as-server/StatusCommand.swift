import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicPKI

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Summarise the AS state: nodes, pool, revocation list.")
    @OptionGroup var dataDir: DataDirOption

    func run() throws {
        let dir = try ASDirectory.open(at: dataDir.path)
        let nodes = try dir.store.nodes()
        let count = { (s: NodeRecord.State) in nodes.filter { $0.state == s }.count }
        print("domain        \(dir.settings.domain)")
        print("database      \(dir.store.location)")
        print("schema        v\(dir.store.schemaVersion)")
        print("nodes         \(nodes.count) (active \(count(.active)), pending \(count(.pending)), revoked \(count(.revoked)))")
        let quarantined = try dir.store.quarantinedAddresses(now: unixNow()).count
        print("pool          \(nodes.count) of \(dir.settings.pool.capacity) used, \(quarantined) quarantined (\(dir.settings.pool))")
        print("CRL           #\(try dir.store.latestCRL()?.number ?? 0), \(try dir.store.revokedSerials().count) revoked serials")
        func list(_ e: [Endpoint]) -> String { e.isEmpty ? "none" : e.map(\.description).joined(separator: " ") }
        print("NMS           \(list(dir.settings.nmsEndpoints))")
        print("TRS           \(list(dir.settings.trsEndpoints))")
    }
}
