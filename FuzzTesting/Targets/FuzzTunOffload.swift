// libFuzzer target: TUN offload segmentation (virtio-net header + TSO super-packet).
// Built together with Sources/CyphonicDataPlane/TunOffload.swift (it has no imports).
// Any input must give 0..128 well-formed segments inside the output area, never a trap.
// The buffers are globals touched only by libFuzzer's single thread (nonisolated(unsafe)).
private let stride = 2048
nonisolated(unsafe) private let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 * stride, alignment: 64)
nonisolated(unsafe) private let lengths = UnsafeMutablePointer<Int>.allocate(capacity: 128)
nonisolated(unsafe) private let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTunOffload(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let n = min(size, input.count)
    input.copyMemory(from: UnsafeRawBufferPointer(start: data, count: n))
    let segments = TunOffload.segment(input, count: n, out: out, stride: stride, offset: 0, maxSegments: 128, lengths: lengths)
    guard (0...128).contains(segments) else { fatalError("segment count \(segments)") }
    for i in 0..<segments where lengths[i] <= 0 || lengths[i] > stride { fatalError("segment length \(lengths[i])") }
    return 0
}
