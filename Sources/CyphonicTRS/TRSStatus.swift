import Foundation

/// What `trs-relay status` shows: sessions, bound ends, nodes, traffic and every
/// refusal and drop by reason.
public struct TRSStatus: Codable, Sendable {
    public var name: String
    public var listen: [String]
    public var sessions: Int
    public var boundEnds: Int
    public var nodes: Int
    public var relayedPackets: UInt64
    public var relayedBytes: UInt64
    public var packetsByFamily: [String: UInt64]
    public var refused: [String: UInt64]
    public var dropped: [String: UInt64]
}

extension TRSServer {
    /// The status JSON, for the control socket.
    public func control(_ request: String) -> [UInt8] {
        guard request == "status" else { return Array("{\"error\": \"unknown request\"}\n".utf8) }
        let f = metrics.snapshot
        let (sessions, bound) = table.withLock { ($0.count, $0.boundEnds) }
        let status = TRSStatus(
            name: identity.name, listen: boundEndpoints.map(\.description), sessions: sessions, boundEnds: bound,
            nodes: nodes.withLock { $0.byIndex.count }, relayedPackets: f.packets.values.reduce(0, +),
            relayedBytes: f.bytes.values.reduce(0, +), packetsByFamily: f.packets, refused: f.refused, dropped: f.dropped)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(((try? encoder.encode(status)) ?? Data()) + Data("\n".utf8))
    }
}
