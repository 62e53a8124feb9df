// libFuzzer target: the CYPHONIC header, datagram and signaling decoders.
// Properties checked besides "never traps": whatever decodes re-encodes to the same bytes,
// and the data plane's direct capsule-header read agrees with the decoder.
import CyphonicCore
import CyphonicWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDatagram(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Half of the inputs get a valid version byte so the fuzzer spends its time past it.
    if let first = bytes.first, first & 1 == 1 { bytes[0] = CyphonicVersion.protocolVersion }
    if let d = try? Datagram.decode(bytes) {
        guard (try? d.encode()) == bytes else { fatalError("datagram re-encoding differs") }
    }
    if let m = try? SignalingMessage.decode(bytes) {
        guard (try? m.encode()) == bytes else { fatalError("signaling re-encoding differs") }
    }
    let header = bytes.withUnsafeBytes { try? Header.decode($0) }
    let fast = bytes.withUnsafeBytes { Header.capsuleFields($0) }
    let expected = header.flatMap { $0.type == .capsule ? ($0.receiverIndex, $0.counter) : nil }
    guard fast?.receiverIndex == expected?.0, fast?.counter == expected?.1 else {
        fatalError("capsuleFields disagrees with Header.decode")
    }
    return 0
}
