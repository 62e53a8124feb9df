import CyphonicCore
import CyphonicSignaling
import CyphonicWire
import Foundation

/// What `nms-server status` prints: every registration as the NMS sees it.
public struct NMSStatus: Codable, Sendable {
    public struct Node: Codable, Sendable {
        public var fqdn: String
        public var group: String?
        public var virtualIPs: [String]
        public var signaling: String
        public var ipv4: String?
        public var ipv6: String?
        public var local: [String]
        public var lastSeenSecondsAgo: Int64
        public var registeredSecondsAgo: Int64
    }
    public var name: String
    public var registered: Int
    public var pendingDirections: Int
    public var nodes: [Node]
}

extension NMSServer {
    /// The registry as status (sorted by name).
    public func status(now: Int64 = unixNowSeconds()) -> NMSStatus {
        func describe(_ v: FamilyView?) -> String? {
            v.map { "\($0.mapped) \(Self.mappingName($0.mapping))" }
        }
        let nodes = registry.all().sorted { $0.fqdn < $1.fqdn }.map { r in
            NMSStatus.Node(
                fqdn: r.fqdn, group: r.group, virtualIPs: [r.virtualIPv4.description, r.virtualIPv6.description],
                signaling: r.signalingEndpoint.description, ipv4: describe(r.network.v4), ipv6: describe(r.network.v6),
                local: r.network.local.map(\.description), lastSeenSecondsAgo: now - r.lastSeen,
                registeredSecondsAgo: now - r.registeredAt)
        }
        return NMSStatus(
            name: identity.name, registered: nodes.count, pendingDirections: directions.withLock { $0.count }, nodes: nodes)
    }

    /// The control socket's answer to `line` ("status": the registry as JSON).
    public func control(_ line: String) -> [UInt8] {
        guard line.isEmpty || line == "status" else { return Array("unknown command: \(line) (try: status)\n".utf8) }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return ((try? e.encode(status())) ?? Data()).map { $0 } + [0x0a]
    }

    /// How status and logs name a mapping behaviour.
    public static func mappingName(_ m: NATProbeResult.Mapping) -> String {
        switch m {
        case .none: return "no-NAT"
        case .endpointIndependent: return "NAT(EIM)"
        case .endpointDependent: return "NAT(symmetric)"
        case .unknown: return "NAT(unprobed)"
        }
    }
}
