import CyphonicCore
import CyphonicWire

/// What another NMS replica needs of a node registered here to direct a tunnel to it:
/// its identity (id, name, group, static key, virtual addresses) and its network as
/// route selection sees it, but not its signaling session (which stays with the replica
/// it registered with; directions to it go through that replica). Encoded for the
/// shared directory (docs/scale.md): version 1, node id (u64), fqdn, group (string, empty
/// for none), static key (32), virtual IPv4 and IPv6 (address), signaling endpoint, the
/// IPv4 and IPv6 views (optional endpoint + mapping u8 each), local endpoints.
public struct DirectoryEntry: Equatable, Sendable {
    public var nodeID: UInt64
    public var name: FQDN
    public var group: String?
    public var staticKey: [UInt8]
    public var virtualIPv4: IPAddress
    public var virtualIPv6: IPAddress
    public var network: NodeNetwork
    public var signalingEndpoint: Endpoint
    public var fqdn: String { name.value }

    public init(_ r: NodeRecord) {
        nodeID = r.nodeID
        name = r.name
        group = r.group
        staticKey = r.staticKey
        virtualIPv4 = r.virtualIPv4
        virtualIPv6 = r.virtualIPv6
        network = r.network
        signalingEndpoint = r.signalingEndpoint
    }

    static let version: UInt8 = 1

    public func encoded() throws(EncodeError) -> [UInt8] {
        var w = ByteWriter(capacity: 160)
        w.u8(Self.version)
        w.u64(nodeID)
        try w.fqdn(name)
        try w.string(group ?? "")
        w.raw(staticKey)
        w.address(virtualIPv4)
        w.address(virtualIPv6)
        w.endpoint(signalingEndpoint)
        for view in [network.v4, network.v6] {
            w.optionalEndpoint(view?.mapped)
            if let view { w.u8(view.mapping.rawValue) }
        }
        try w.endpoints(network.local)
        return w.bytes
    }

    public init(bytes: [UInt8]) throws(DecodeError) {
        self = try bytes.withUnsafeBytes { raw in Result { () throws(DecodeError) in try DirectoryEntry(raw) } }.get()
    }

    init(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) {
        var r = ByteReader(bytes)
        guard try r.u8() == Self.version else { throw .invalidField("directoryEntry.version") }
        nodeID = try r.u64()
        name = try r.fqdn(field: "directoryEntry.fqdn")
        let g = try r.string(limit: 255, field: "directoryEntry.group")
        group = g.isEmpty ? nil : g
        staticKey = try r.bytes(32)
        virtualIPv4 = try r.address(field: "directoryEntry.vip4")
        virtualIPv6 = try r.address(field: "directoryEntry.vip6")
        signalingEndpoint = try r.endpoint(field: "directoryEntry.signaling")
        var views: [FamilyView?] = []
        for _ in 0..<2 {
            guard let mapped = try r.optionalEndpoint(field: "directoryEntry.view") else {
                views.append(nil)
                continue
            }
            guard let mapping = NATProbeResult.Mapping(rawValue: try r.u8()) else { throw .invalidField("directoryEntry.mapping") }
            views.append(FamilyView(mapped: mapped, mapping: mapping))
        }
        network = NodeNetwork(v4: views[0], v6: views[1], local: try r.endpoints(field: "directoryEntry.local"))
        try r.finish()
    }
}

/// What one NMS replica tells another through PostgreSQL's NOTIFY (docs/scale.md):
/// `deliver` a direction to a node registered there (and send its confirmation back to
/// `origin`), or `confirm`: a responder's confirmation for a direction `origin` made.
/// Encoded as kind (u8), fields, each message an encoded ``SignalingMessage``; in the
/// NOTIFY payload as base64.
public enum ReplicaMessage: Equatable, Sendable {
    case deliver(pathID: UInt64, target: FQDN, origin: String, message: [UInt8])
    case confirm(responder: FQDN, message: [UInt8])

    public func encoded() throws(EncodeError) -> [UInt8] {
        var w = ByteWriter(capacity: 700)
        switch self {
        case .deliver(let path, let target, let origin, let message):
            w.u8(1)
            w.u64(path)
            try w.fqdn(target)
            try w.string(origin)
            try w.lengthPrefixed(message)
        case .confirm(let responder, let message):
            w.u8(2)
            try w.fqdn(responder)
            try w.lengthPrefixed(message)
        }
        return w.bytes
    }

    public init(bytes: [UInt8]) throws(DecodeError) {
        self = try bytes.withUnsafeBytes { raw in Result { () throws(DecodeError) in try ReplicaMessage(raw) } }.get()
    }

    init(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) {
        var r = ByteReader(bytes)
        switch try r.u8() {
        case 1:
            self = .deliver(
                pathID: try r.u64(), target: try r.fqdn(field: "replica.target"), origin: try r.string(limit: 255, field: "replica.origin"),
                message: try r.lengthPrefixed(limit: 4096, field: "replica.message"))
        case 2:
            self = .confirm(responder: try r.fqdn(field: "replica.responder"), message: try r.lengthPrefixed(limit: 4096, field: "replica.message"))
        default:
            throw .invalidField("replica.kind")
        }
        try r.finish()
    }
}
