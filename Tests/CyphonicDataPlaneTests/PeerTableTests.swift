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

/// Parked addresses of closed tunnels (DormantRoutes): a packet for one wants the
/// peer's name once; a peer holding the address again, expiry and the bound end it.
@Suite struct ParkedRouteTests {
    func peer(_ name: String, _ index: Int) throws -> Peer {
        Peer(
            staticKey: try X25519PrivateKey().publicKey, fqdn: "\(name).cyphonic.internal",
            addresses: [IPAddress("198.18.0.\(index)")!, IPAddress("2001:db8:c0ff:ee::\(index)")!], endpoint: nil)
    }

    /// An IPv4 or IPv6 header to `destination` (what a TUN read gives).
    func packet(to destination: String) -> [UInt8] {
        switch IPAddress(destination)! {
        case .v4(let a, let b, let c, let d):
            var p = [UInt8](repeating: 0, count: 28)
            p[0] = 0x45
            p[16..<20] = [a, b, c, d]
            return p
        case .v6(let a):
            var p = [UInt8](repeating: 0, count: 48)
            p[0] = 0x60
            p[24..<40] = ArraySlice(a)
            return p
        }
    }

    func miss(_ table: PeerTable, _ destination: String) {
        let p = packet(to: destination)
        table.withLock { p.withUnsafeBytes { table.missLocked(packet: $0) } }
    }

    @Test func aPacketForAParkedAddressWantsThePeerOnce() throws {
        let table = PeerTable()
        let a = try peer("a", 1)
        table.withLock {
            table.insertLocked(a)
            table.parkLocked(a, now: 100)
            #expect(table.peerLocked(staticKey: a.staticKey.bytes) == nil)
            #expect(table.parkedCountLocked == 2)
        }
        miss(table, "198.18.0.2")
        #expect(table.takeWanted().isEmpty)
        miss(table, "198.18.0.1")
        miss(table, "2001:db8:c0ff:ee::1")
        miss(table, "198.18.0.1")
        #expect(table.takeWanted() == ["a.cyphonic.internal"])
        #expect(table.takeWanted().isEmpty)
        // Too short to be an IP packet, or another version: nothing, and no crash.
        table.withLock {
            [0x45, 0, 0].withUnsafeBytes { table.missLocked(packet: $0) }
            [UInt8](repeating: 0x70, count: 60).withUnsafeBytes { table.missLocked(packet: $0) }
        }
        #expect(table.takeWanted().isEmpty)
    }

    @Test func aPeerHoldingTheAddressAgainUnparksIt() throws {
        let table = PeerTable()
        let a = try peer("a", 1)
        let b = try peer("b", 1)
        table.withLock {
            table.insertLocked(a)
            table.parkLocked(a, now: 100)
            // Another key proved these addresses (the AS handed them on): it owns them now.
            #expect(table.insertLocked(b) == nil)
            #expect(table.parkedCountLocked == 0)
        }
        miss(table, "198.18.0.1")
        #expect(table.takeWanted().isEmpty)
    }

    @Test func aPeerBackWithNewAddressesLeavesNoneParked() throws {
        let table = PeerTable()
        let before = try peer("a", 1)
        let after = try peer("a", 7)  // same name, the AS handed it new addresses
        table.withLock {
            table.insertLocked(before)
            table.parkLocked(before, now: 100)
            table.insertLocked(after)
            #expect(table.parkedCountLocked == 0)
            // And `forget` unparks a name that is only parked.
            table.parkLocked(after, now: 200)
            table.unparkLocked(fqdn: "a.cyphonic.internal")
            #expect(table.parkedCountLocked == 0)
        }
        miss(table, "198.18.0.1")
        miss(table, "198.18.0.7")
        #expect(table.takeWanted().isEmpty)
    }

    @Test func parkedAddressesExpireAndStayBounded() throws {
        let table = PeerTable()
        let old = try peer("old", 1)
        let young = try peer("young", 2)
        table.withLock {
            table.insertLocked(old)
            table.insertLocked(young)
            table.parkLocked(old, now: 100)
            table.parkLocked(young, now: 200)
            table.expireParkedLocked(before: 150)
            #expect(table.parkedCountLocked == 2)
        }
        miss(table, "198.18.0.1")
        miss(table, "198.18.0.2")
        #expect(table.takeWanted() == ["young.cyphonic.internal"])
        // Far more closed tunnels than the bound, all at one time: the table stays bounded.
        table.withLock {
            for i in 0..<(DormantRoutes.capacity + 100) {
                let p = Peer(
                    staticKey: try! X25519PrivateKey().publicKey, fqdn: "n\(i).cyphonic.internal",
                    addresses: [IPAddress.v4(10, UInt8(i >> 16 & 0xff), UInt8(i >> 8 & 0xff), UInt8(i & 0xff))], endpoint: nil)
                table.insertLocked(p)
                table.parkLocked(p, now: 300)
            }
            #expect(table.parkedCountLocked <= DormantRoutes.capacity)
            #expect(table.parkedCountLocked >= DormantRoutes.capacity / 2)
            // The newest stays (the older half went).
            table.expireParkedLocked(before: 300)
            #expect(table.parkedCountLocked > 0)
        }
    }
}
