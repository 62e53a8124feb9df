// libFuzzer target: TUN offload in both directions. Segmentation of a virtio-net header
// + TSO super-packet, then coalescing of the resulting packets back into TUN writes.
// Built together with Sources/CyphonicDataPlane/TunOffload.swift and TunCoalescer.swift.
// Any input must give 0..128 well-formed segments inside the output area, the same
// when cut one by one into buffers of exactly the largest segment's size; coalescing
// them must write every packet exactly once, no write over 64 KiB, and segmenting the
// writes again must give back as many packets; never a trap.
// The buffers are globals touched only by libFuzzer's single thread (nonisolated(unsafe)).
import Glibc

private let stride = 2048
private let offset = 16
nonisolated(unsafe) private let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 * stride, alignment: 64)
nonisolated(unsafe) private let again = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 * stride, alignment: 64)
nonisolated(unsafe) private let lengths = UnsafeMutablePointer<Int>.allocate(capacity: 128)
nonisolated(unsafe) private let lengths2 = UnsafeMutablePointer<Int>.allocate(capacity: 128)
nonisolated(unsafe) private let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 64)
nonisolated(unsafe) private let input2 = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 64)
nonisolated(unsafe) private let gathered = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 64)
nonisolated(unsafe) private var resegmented = 0
nonisolated(unsafe) private let coalescer = TunCoalescer { iov, count in
    var n = 0
    for i in 0..<Int(count) {
        let len = iov[i].iov_len
        guard n + len <= gathered.count else { fatalError("write over 64 KiB") }
        (gathered.baseAddress! + n).copyMemory(from: iov[i].iov_base!, byteCount: len)
        n += len
    }
    guard n <= 65_535 + 40 + TunOffload.headerSize else { fatalError("write of \(n) bytes") }
    resegmented += TunOffload.segment(gathered, count: n, out: again, stride: stride, offset: 0, maxSegments: 128, lengths: lengths2)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTunOffload(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let n = min(size, input.count)
    input.copyMemory(from: UnsafeRawBufferPointer(start: data, count: n))
    let segments = TunOffload.segment(input, count: n, out: out, stride: stride, offset: offset, maxSegments: 128, lengths: lengths)
    guard (0...128).contains(segments) else { fatalError("segment count \(segments)") }
    for i in 0..<segments where lengths[i] <= 0 || lengths[i] > stride - offset { fatalError("segment length \(lengths[i])") }
    // The daemon's path: the read checked where it landed, then each segment cut into a
    // buffer of exactly the cut's `largest` bytes (AddressSanitizer stops a write past
    // it), byte for byte what segment() gave.
    input2.copyMemory(from: UnsafeRawBufferPointer(start: data, count: n))
    if case .superPacket(let cut)? = TunOffload.prepare(input2, count: n), cut.segments <= 128 {
        let packet = UnsafeRawBufferPointer(rebasing: input2[TunOffload.headerSize..<n])
        for i in 0..<cut.segments {
            let seg = UnsafeMutableRawBufferPointer.allocate(byteCount: cut.largest, alignment: 1)
            defer { seg.deallocate() }
            let length = TunOffload.writeSegment(i, of: cut, from: packet, into: seg)
            guard length > 0, length <= cut.largest else { fatalError("segment \(i) of \(length) bytes, largest \(cut.largest)") }
            if segments == cut.segments {
                let reference = UnsafeRawBufferPointer(rebasing: out[(i * stride + offset)..<(i * stride + offset + lengths[i])])
                guard reference.elementsEqual(UnsafeRawBufferPointer(rebasing: seg[0..<length])) else { fatalError("segment \(i) differs") }
            }
        }
    }
    var expected = 0
    resegmented = 0
    let packets = coalescer.packets
    for i in 0..<segments {
        if lengths[i] > 20 { expected += 1 }
        coalescer.add(out.baseAddress! + i * stride + offset, length: lengths[i])
    }
    coalescer.flush()
    guard coalescer.packets - packets == segments else { fatalError("packets written \(coalescer.packets - packets) of \(segments)") }
    guard resegmented == expected else { fatalError("segmented back \(resegmented), expected \(expected)") }
    return 0
}
