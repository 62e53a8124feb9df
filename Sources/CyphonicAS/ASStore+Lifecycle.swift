import CyphonicCore

/// A virtual address pair kept out of the pool after `node remove` until `until`
/// (the latest expiry of the certificates that named it).
public struct QuarantinedAddress: Sendable, Equatable, Codable {
    public var index: Int64
    public var vip4: String
    public var vip6: String
    public var until: Int64
    /// The removed node that held the addresses.
    public var node: String
}

/// What `node remove` did: the addresses it freed and, if a certificate naming them
/// is still valid, until when they are quarantined.
public struct RemovedNode: Sendable, Equatable {
    public var name: String
    public var vip4: String
    public var vip6: String
    public var quarantinedUntil: Int64?
}

/// A certificate of a node as the store holds it (for operators and tests).
public struct StoredCertificate: Sendable, Equatable {
    public var serial: UInt64
    public var notBefore: Int64
    public var notAfter: Int64
    public var revokedAt: Int64?
}

/// What a certificate login wrote (``ASStore/recordCertificateLogin(nodeID:publicKey:renewed:renewUnlessNewestExpiresAfter:now:)``).
public enum CertificateLoginRecord: Sendable, Equatable {
    /// The node was no longer active with that key when the login was written
    /// (revoked or removed meanwhile): nothing was written, nothing is handed out.
    case notActive
    /// Recorded; `certificate` is the node's newest certificate, the renewed one if `issued`.
    case recorded(certificate: [UInt8], issued: Bool)
}

extension ASStore {
    /// Adds a pending node with the lowest address index that is neither held by a node
    /// nor quarantined at `now` (expired quarantine entries are dropped here).
    public func addNode(
        name: String, fqdn: FQDN, group: String?, pool: AddressPool, tokenHash: [UInt8], salt: [UInt8],
        iterations: Int, now: Int64
    ) throws -> NodeRecord {
        guard FQDN.isValidLabel(name) else { throw StoreError.invalidName(name) }
        return try db.withLock { db in
            try db.transaction {
                if try !db.query("SELECT 1 FROM nodes WHERE name = ? OR fqdn = ?", [.text(name), .text(fqdn.value)]).isEmpty {
                    throw StoreError.nameTaken(name)
                }
                // Nor the name of a service (NMS, TRS) of this AS.
                if try !db.query("SELECT 1 FROM services WHERE name = ?", [.text(fqdn.value)]).isEmpty {
                    throw StoreError.nameTaken("\(fqdn.value) (a service)")
                }
                try db.query("DELETE FROM retired_addresses WHERE until <= ?", [.integer(now)])
                let used = try db.query("SELECT addr_index FROM nodes UNION SELECT addr_index FROM retired_addresses ORDER BY 1")
                    .compactMap { $0[0].int }
                var free: Int64 = 1
                for index in used {
                    if index == free { free += 1 } else if index > free { break }
                }
                guard let (v4, v6) = pool.addresses(index: free) else { throw StoreError.poolExhausted(pool.description) }
                let id: Int64
                do {
                    id =
                        try db.query(
                            """
                            INSERT INTO nodes(name, fqdn, grp, addr_index, vip4, vip6, token_hash, token_salt, token_iterations,
                                              state, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id
                            """,
                            [
                                .text(name), .text(fqdn.value), group.map { .text($0) } ?? .null, .integer(free),
                                .text(v4.description), .text(v6.description), .blob(tokenHash), .blob(salt),
                                .integer(Int64(iterations)), .integer(now),
                            ]
                        ).first?.first?.int ?? 0
                } catch let e as StoreFailure where e.isConstraint {
                    throw StoreError.nameTaken(name)
                }
                try Self.audit(db, now, "node.add", name, "vip4=\(v4) vip6=\(v6)")
                return Self.node(try db.query("SELECT \(Self.nodeColumns) FROM nodes n WHERE n.id = ?", [.integer(id)])[0])
            }
        }
    }

    /// Removes a node; its certificates are revoked first so they stay refused, and its
    /// addresses are quarantined until the latest expiry of any certificate that named
    /// them, so no later `node add` receives addresses a still-valid certificate claims.
    @discardableResult
    public func removeNode(named name: String, now: Int64, signCRL: ([UInt64], UInt64) throws -> [UInt8]) throws -> RemovedNode {
        try db.withLock { db in
            try db.transaction {
                guard
                    let row = try db.query(
                        "SELECT id, addr_index, vip4, vip6, name FROM nodes WHERE name = ? OR fqdn = ?",
                        [.text(name), .text(name)]
                    ).first, let id = row[0].int, let index = row[1].int
                else { throw StoreError.notFound(name) }
                let removed = RemovedNode(
                    name: row[4].string ?? name, vip4: row[2].string ?? "", vip6: row[3].string ?? "",
                    quarantinedUntil: nil)
                let until = try db.query("SELECT MAX(not_after) FROM certificates WHERE node_id = ?", [.integer(id)])
                    .first?.first?.int
                _ = try Self.revokeCertificates(db, nodeID: id, now: now)
                try Self.publishCRL(db, now: now, sign: signCRL)
                try db.query("DELETE FROM nodes WHERE id = ?", [.integer(id)])
                guard let until, until > now else {
                    try Self.audit(db, now, "node.remove", name, "vip4=\(removed.vip4) vip6=\(removed.vip6) freed")
                    return removed
                }
                try db.query(
                    """
                    INSERT INTO retired_addresses(addr_index, vip4, vip6, until, node) VALUES(?, ?, ?, ?, ?)
                    ON CONFLICT(addr_index) DO UPDATE SET
                      until = CASE WHEN excluded.until > retired_addresses.until THEN excluded.until ELSE retired_addresses.until END,
                      vip4 = excluded.vip4,
                      vip6 = excluded.vip6, node = excluded.node
                    """, [.integer(index), .text(removed.vip4), .text(removed.vip6), .integer(until), .text(removed.name)])
                try Self.audit(
                    db, now, "node.remove", name,
                    "vip4=\(removed.vip4) vip6=\(removed.vip6) quarantined until \(until)")
                var result = removed
                result.quarantinedUntil = until
                return result
            }
        }
    }

    /// Addresses quarantined at `now` (freed by `node remove`, not yet reissuable).
    public func quarantinedAddresses(now: Int64) throws -> [QuarantinedAddress] {
        try db.withLock { db in
            try db.query(
                "SELECT addr_index, vip4, vip6, until, node FROM retired_addresses WHERE until > ? ORDER BY addr_index",
                [.integer(now)]
            ).map {
                QuarantinedAddress(
                    index: $0[0].int ?? 0, vip4: $0[1].string ?? "", vip6: $0[2].string ?? "",
                    until: $0[3].int ?? 0, node: $0[4].string ?? "")
            }
        }
    }

    /// Every certificate the store holds for a node, oldest first.
    public func certificates(nodeID: Int64) throws -> [StoredCertificate] {
        try db.withLock { db in
            try db.query(
                "SELECT serial, not_before, not_after, revoked_at FROM certificates WHERE node_id = ? ORDER BY not_before, serial",
                [.integer(nodeID)]
            ).map {
                StoredCertificate(
                    serial: UInt64(bitPattern: $0[0].int ?? 0), notBefore: $0[1].int ?? 0,
                    notAfter: $0[2].int ?? 0, revokedAt: $0[3].int)
            }
        }
    }

    /// The newest unrevoked certificate of a node: DER and expiry.
    public func newestCertificate(nodeID: Int64) throws -> (der: [UInt8], notAfter: Int64)? {
        try db.withLock { db in try Self.newestCertificate(db, nodeID: nodeID) }
    }

    /// A certificate login, written in one transaction that re-checks what the caller
    /// decided on: the node must still be `active` with `publicKey` (else ``CertificateLoginRecord/notActive``,
    /// so a login racing `node revoke` never leaves a fresh unrevoked certificate). A
    /// `renewed` certificate is stored only if the node's newest certificate still
    /// expires at or before `renewUnlessNewestExpiresAfter` (a concurrent login may have
    /// renewed already: then that one is handed back and `renewed` is discarded); storing
    /// it deletes the node's superseded certificates that are expired and unrevoked, so
    /// renewals do not grow the table.
    public func recordCertificateLogin(
        nodeID: Int64, publicKey: [UInt8], renewed: IssuedCertificate?,
        renewUnlessNewestExpiresAfter threshold: Int64, now: Int64
    ) throws
        -> CertificateLoginRecord
    {
        try db.withLock { db in
            try db.transaction {
                let changed = try db.execute(
                    "UPDATE nodes SET last_login_at = ? WHERE id = ? AND state = 'active' AND public_key = ?",
                    [.integer(now), .integer(nodeID), .blob(publicKey)])
                guard changed == 1 else { return .notActive }
                let newest = try Self.newestCertificate(db, nodeID: nodeID)
                guard let renewed, (newest?.notAfter ?? Int64.min) <= threshold else {
                    guard let newest else { throw StoreError.notFound("certificate of node \(nodeID)") }
                    return .recorded(certificate: newest.der, issued: false)
                }
                try Self.insertCertificate(db, renewed, nodeID: nodeID)
                let pruned = try db.execute(
                    "DELETE FROM certificates WHERE node_id = ? AND revoked_at IS NULL AND not_after <= ? AND serial <> ?",
                    [.integer(nodeID), .integer(now), .integer(Int64(bitPattern: renewed.serial))])
                try Self.audit(db, now, "node.renew", "\(nodeID)", "serial=\(renewed.serial) pruned_expired=\(pruned)")
                return .recorded(certificate: renewed.der, issued: true)
            }
        }
    }

    /// Publishes a fresh CRL if `isStale` says the current one (DER) needs it, or if
    /// there is none; check and publish in one transaction. Returns the new number.
    public func refreshCRL(
        now: Int64, if isStale: ([UInt8]) -> Bool,
        sign: ([UInt64], UInt64) throws -> [UInt8]
    ) throws -> UInt64? {
        try db.withLock { db in
            try db.transaction {
                if let der = try db.query("SELECT der FROM crls ORDER BY number DESC LIMIT 1").first?.first?.bytes,
                    !isStale(der)
                {
                    return nil
                }
                try Self.publishCRL(db, now: now, sign: sign)
                let number = UInt64(try db.query("SELECT MAX(number) FROM crls").first?.first?.int ?? 0)
                try Self.audit(db, now, "crl.refresh", "#\(number)", "")
                return number
            }
        }
    }

    static func newestCertificate(_ db: any StoreConnection, nodeID: Int64) throws -> (der: [UInt8], notAfter: Int64)? {
        try db.query(
            "SELECT der, not_after FROM certificates WHERE node_id = ? AND revoked_at IS NULL ORDER BY not_after DESC LIMIT 1",
            [.integer(nodeID)]
        ).first.map { ($0[0].bytes ?? [], $0[1].int ?? 0) }
    }
}
