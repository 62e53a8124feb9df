import CyphonicCore
import CyphonicCrypto
import CyphonicPosix
import Testing

@testable import CyphonicDataPlane

/// Peer identity rules of the table (issue 8, defect 1): two peers never silently share
/// a virtual IP; an owner without a session gives way.
@Suite struct PeerTableTests {
    func peer(_ name: String, _ index: Int) throws -> Peer {
        Peer(
            staticKey: try X25519PrivateKey().publicKey, fqdn: "\(name).cyphonic.internal",
            addresses: [IPAddress("198.18.0.\(index)")!, IPAddress("2001:db8:c0ff:ee::\(index)")!], endpoint: nil)
    }

    func session(_ index: UInt32, confirmed: Bool = true) throws -> DataSession {
        let raw = try SecureBytes.random(count: 32)
        return try DataSession(
            localIndex: index, remoteIndex: index + 100, isInitiator: true, send: raw, receive: raw,
            algorithm: .aes256gcm, threads: 2, confirmed: confirmed)
    }

    @Test func aSecondPeerClaimingLiveAddressesIsRefused() throws {
        let table = PeerTable()
        let a = try peer("a", 1)
        let c = try peer("c", 1)
        try table.withLock {
            #expect(table.insertLocked(a) == nil)
            table.installLocked(try session(1), for: a, endpoint: nil)
            // c claims a's addresses while a has a session: refused, a keeps the route.
            #expect(table.insertLocked(c) === a)
            #expect(table.peerLocked(staticKey: c.staticKey.bytes) == nil)
            #expect(table.peerLocked(staticKey: a.staticKey.bytes) === a)
            // Without a session, a gives way.
            table.dropLocked(a.current!, of: a)
            #expect(table.insertLocked(c) == nil)
            #expect(table.peerLocked(staticKey: a.staticKey.bytes) == nil)
            #expect(table.peerLocked(staticKey: c.staticKey.bytes) === c)
        }
    }

    @Test func anUnconfirmedRekeyIsReceivedOnButNotSentOnUntilPromoted() throws {
        let table = PeerTable()
        let a = try peer("a", 1)
        let old = try session(1)
        let fresh = try session(2, confirmed: false)
        table.withLock {
            table.insertLocked(a)
            table.installLocked(old, for: a, endpoint: nil)
            table.installLocked(fresh, for: a, endpoint: nil)
            #expect(a.current === old && a.next === fresh)
            #expect(table.sessionLocked(index: 2)?.1 === fresh)
        }
        #expect(fresh.confirm())
        #expect(!fresh.confirm())
        table.withLock {
            table.promoteLocked(fresh, of: a)
            #expect(a.current === fresh && a.previous === old && a.next == nil)
        }
    }

    @Test func countersAtTheLimitAreRefusedOnBothSides() throws {
        let s = try session(1)
        var buffer = [UInt8](repeating: 0, count: 64)
        buffer.withUnsafeMutableBytes { slot in
            #expect(s.seal(slot: slot, length: 8, counter: DataSession.rejectAfterMessages, keyIndex: 0) == nil)
            #expect(s.seal(slot: slot, length: 8, counter: DataSession.rejectAfterMessages - 1, keyIndex: 0) != nil)
            #expect(s.open(slot: slot, length: 40, counter: DataSession.rejectAfterMessages, keyIndex: 0) == nil)
        }
    }

    @Test func controlInboxKeepsOrderAndDropsWhenFull() {
        let inbox = ControlInbox(capacity: 4)
        let from = SocketAddress()
        for i in 0..<6 {
            let kept = [UInt8](repeating: UInt8(i), count: 10 + i).withUnsafeBytes { inbox.push($0, from: from) }
            #expect(kept == (i < 4))
        }
        #expect([UInt8](repeating: 0, count: ControlInbox.slotSize + 1).withUnsafeBytes { inbox.push($0, from: from) } == false)
        var seen: [Int] = []
        inbox.drain(waitMilliseconds: 0) { bytes, _ in seen.append(bytes.count) }
        #expect(seen == [10, 11, 12, 13])
        #expect(inbox.queued == 0)
    }
}
