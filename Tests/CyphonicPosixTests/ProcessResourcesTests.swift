import Testing

@testable import CyphonicPosix

/// `ProcessResources` reads this very process: malloc's figures move with what it
/// allocates and frees, and resident memory and threads are those /proc reports.
@Suite struct ProcessResourcesTests {
    @Test func mallocFiguresFollowAllocations() throws {
        let before = ProcessResources.current()
        // 256 MiB: far more than the other tests running alongside allocate or free meanwhile.
        let block = UnsafeMutableRawPointer.allocate(byteCount: 256 << 20, alignment: 16)
        block.initializeMemory(as: UInt8.self, repeating: 1, count: 256 << 20)
        let during = ProcessResources.current()
        block.deallocate()
        let after = ProcessResources.current()
        #expect(during.mallocInUseBytes >= before.mallocInUseBytes + (200 << 20))
        #expect(during.mallocHeldBytes >= during.mallocInUseBytes)
        #expect(after.mallocInUseBytes + (200 << 20) < during.mallocInUseBytes)
        // 256 MiB written: resident memory saw it.
        #expect(during.residentBytes >= before.residentBytes + (200 << 20))
        // ... and it is anonymous memory (malloc's), not a mapped file.
        let anonymousBefore = try #require(before.residentAnonymousBytes)
        let anonymousDuring = try #require(during.residentAnonymousBytes)
        #expect(anonymousDuring >= anonymousBefore + (200 << 20))
        #expect(anonymousDuring <= during.residentBytes)
        #expect(before.threads >= 1)
        #expect(after.cpuSeconds >= before.cpuSeconds && before.cpuSeconds > 0)
    }
}
