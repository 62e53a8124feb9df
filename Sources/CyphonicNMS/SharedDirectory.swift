import CyphonicCore
import CyphonicCrypto
import CyphonicPosix
import CyphonicPostgres
import CyphonicSignaling
import Dispatch
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The directory NMS replicas share in PostgreSQL (docs/scale.md): which replica each
/// node is registered with and its ``DirectoryEntry``, in UNLOGGED tables (soft state:
/// nodes register again, and each replica publishes all of its registrations again
/// after a PostgreSQL restart). Keepalives never touch it: a replica writes at
/// registration, roaming, NAT probe results and sign-off, batched (one statement per
/// 50 ms at most, however many nodes), and reads when a direction names a node it does
/// not hold. Replicas beat every ``heartbeatSeconds``; an entry of a replica silent for
/// ``staleSeconds`` is returned as not alive (its node is moving to another replica),
/// and the entries of a replica silent for a minute are deleted (all on the database's
/// clock). Trust: whoever may connect to the database may write entries and messages,
/// so it is the NMS's own (docs/scale.md, "Trust"). Replicas
/// pass each other messages (``ReplicaMessage``) by `NOTIFY` on a channel per replica.
/// Every database call runs on a thread of its own or of the NMS's workers, never on an
/// event loop. Thread-safe.
public final class SharedDirectory: Sendable {
    /// This replica's name (unique among the replicas: its NOTIFY channel derives from it).
    public let replica: String
    public let target: PostgresTarget
    public static let heartbeatSeconds: Int64 = 2
    public static let staleSeconds: Int64 = 6
    static let forgetSeconds: Int64 = 60

    enum Op {
        case publish([UInt8])
        case withdraw
    }

    struct State {
        var pending: [String: Op] = [:]
        var running = true
    }

    private let db: Locked<BlockingPostgresConnection>
    /// Connections for lookups and messages (directions), made when first needed: several,
    /// so directions do not queue behind one another or behind the writer's batches.
    private let readers = (0..<SharedDirectory.readerCount).map { _ in Locked<BlockingPostgresConnection?>(nil) }
    private let nextReader = Atomic<Int>(0)
    static let readerCount = 4
    /// Where lookups and messages wait on the database (never a receive thread, the
    /// signer or an event loop).
    private let workers = BlockingWorkers(count: 8, maxQueued: 4096, name: "nms-dir")
    /// The connection that LISTENs on our channel, and its subscription.
    private let listener = Locked<(connection: BlockingPostgresConnection, context: PostgresListenContext)?>(nil)
    private let state = Mutex(State())
    private let logger: Logger
    private let inbox = DispatchQueue(label: "cyphonic.nms.replica-inbox")
    /// What `start` was given, boxed: a closure kept in a Mutex and read through its
    /// `inout` access is wrapped in a new pair of reabstraction thunks at every access,
    /// so each call would get slower than the last (measured: directions/s falling).
    private final class Callbacks: Sendable {
        let onMessage: @Sendable (ReplicaMessage) -> Void
        let registrations: @Sendable () -> [DirectoryEntry]
        init(_ m: @escaping @Sendable (ReplicaMessage) -> Void, _ r: @escaping @Sendable () -> [DirectoryEntry]) {
            onMessage = m
            registrations = r
        }
    }
    private let callbacks = Mutex<Callbacks?>(nil)
    private let stopped = DispatchSemaphore(value: 0)
    /// When our own ping last came back through the listener (monotonic seconds).
    private let lastPing = Mutex(monotonicSeconds())
    /// Entries written, lookups made, messages sent and received (for metrics).
    public let counters = Mutex((published: 0, withdrawn: 0, lookups: 0, sent: 0, received: 0, flushes: 0))

    /// Connects, creates the tables (once, whichever replica comes first) and enters
    /// this replica in them.
    public init(target: PostgresTarget, replica: String, logger: Logger) throws {
        guard !replica.isEmpty, replica.utf8.count <= 200 else {
            throw PostgresStoreError(message: "--replica: give a name of 1-200 bytes, unique among the NMS replicas", sqlState: nil)
        }
        self.target = target
        self.replica = replica
        self.logger = logger
        let connection = try BlockingPostgresConnection(target)
        db = Locked(connection)
        try Self.createTables(connection)
        try Self.claim(replica, connection, logger: logger)
        try beat()
    }

    /// Takes the name `replica`: a name still beating belongs to a running replica — or to
    /// this one's previous process, killed a moment ago: its beat stops within
    /// ``staleSeconds``, a living replica's does not (then this one refuses to start). The
    /// previous process's entries go (its nodes register again).
    static func claim(_ replica: String, _ c: BlockingPostgresConnection, logger: Logger) throws {
        var binds = PostgresBindings()
        binds.append(replica)
        let deadline = monotonicSeconds() + Double(staleSeconds) + 2
        while true {
            let age = try c.run("SELECT EXTRACT(EPOCH FROM now())::int8 - heartbeat FROM nms_replicas WHERE name = $1", binds).rows.first
                .map { try $0.decode(Int64.self) }
            guard let age, age < staleSeconds else { break }
            guard monotonicSeconds() < deadline else {
                throw PostgresStoreError(
                    message: "--replica: another NMS replica named \(replica) is running (it beat \(age) s ago); give each its own name",
                    sqlState: nil)
            }
            logger.notice("nms: replica name \(replica) beat \(age) s ago (a previous process?); waiting for it to go stale")
            Thread.sleep(forTimeInterval: 1)
        }
        try c.run("DELETE FROM nms_nodes WHERE replica = $1", binds)
    }

    /// The NOTIFY channel of `replica` (an identifier whatever the name holds), computed
    /// once per name.
    public static func channel(of replica: String) -> String {
        if let known = channels.withLock({ $0[replica] }) { return known }
        let channel = "cyphonic_nms_" + Hex.encode(Array(SHA256.hash(Array(replica.utf8)).prefix(12)))
        channels.withLock { c in
            if c.count >= 1024 { c.removeAll() }
            c[replica] = channel
        }
        return channel
    }
    private static let channels = Mutex<[String: String]>([:])

    static func createTables(_ c: BlockingPostgresConnection) throws {
        try c.transaction {
            try c.run("SELECT pg_advisory_xact_lock(4852015021357843266)")
            try c.run(
                """
                CREATE UNLOGGED TABLE IF NOT EXISTS nms_nodes(
                  fqdn TEXT PRIMARY KEY, replica TEXT NOT NULL, record BYTEA NOT NULL, updated BIGINT NOT NULL)
                """)
            try c.run("CREATE INDEX IF NOT EXISTS nms_nodes_replica ON nms_nodes(replica)")
            try c.run("CREATE UNLOGGED TABLE IF NOT EXISTS nms_replicas(name TEXT PRIMARY KEY, heartbeat BIGINT NOT NULL)")
        }
    }

    /// Starts the writer thread (batches, heartbeat, cleanup) and the listener; `onMessage`
    /// gets messages for this replica (on a queue of their own), `registrations` all of
    /// this replica's entries (published again whenever the database was reconnected).
    public func start(onMessage: @escaping @Sendable (ReplicaMessage) -> Void, registrations: @escaping @Sendable () -> [DirectoryEntry]) {
        callbacks.withLock { $0 = Callbacks(onMessage, registrations) }
        listen()
        startThread(named: "nms-directory") { [self] in
            var lastBeat: Int64 = 0
            var lastCleanup: Int64 = 0
            var seenConnections = db.withLock { $0.connectionCount }
            while state.withLock({ $0.running }) {
                let now = unixNowSeconds()
                do {
                    let reconnected = db.withLock { $0.connectionCount } != seenConnections
                    if now - lastBeat >= Self.heartbeatSeconds || reconnected {
                        try beat()
                        lastBeat = now
                    }
                    let deaf = monotonicSeconds() - lastPing.withLock { $0 } > Double(3 * Self.heartbeatSeconds)
                    if reconnected || deaf || !listener.withLock({ $0?.connection.isOpen ?? false }) {
                        if deaf { logger.warning("nms: shared directory: our own pings stopped arriving; listening again") }
                        lastPing.withLock { $0 = monotonicSeconds() }
                        listen()
                    }
                    if reconnected, let all = callbacks.withLock({ $0 })?.registrations {
                        // UNLOGGED tables are empty after a PostgreSQL restart: ours again.
                        let entries = all()
                        for e in entries { publish(e) }
                        logger.notice("nms: shared directory reconnected; \(entries.count) registration(s) published again")
                    }
                    seenConnections = db.withLock { $0.connectionCount }
                    try flush(now: now)
                    if now - lastCleanup >= 30 {
                        try cleanup()
                        lastCleanup = now
                    }
                } catch {
                    logger.warning("nms: shared directory: \(error)")
                    usleep(500_000)
                }
                usleep(50_000)
            }
            try? flush(now: unixNowSeconds())
            stopped.signal()
        }
    }

    /// Runs `job` on the directory's own threads (it may wait on the database); false when
    /// too many wait already (the caller refuses what it was asked).
    public func perform(_ job: @escaping @Sendable () -> Void) -> Bool { workers.submit(job) }

    /// ``send(_:to:)`` on the directory's threads; failures are logged.
    public func sendSoon(_ message: ReplicaMessage, to replica: String) {
        let queued = workers.submit { [self] in
            do { try send(message, to: replica) } catch { logger.warning("nms: cannot send to replica \(replica): \(error)") }
        }
        if !queued { logger.warning("nms: message to replica \(replica) dropped: too many waiting") }
    }

    /// Stops the thread after a last flush, withdraws this replica's entries, closes.
    public func stop() {
        guard
            state.withLock({ s -> Bool in
                defer { s.running = false }
                return s.running
            })
        else { return }
        stopped.wait()
        workers.stop()
        listener.withLock { l in
            l?.context.stop()
            l?.connection.close()
            l = nil
        }
        _ = try? db.withLock { c in
            var binds = PostgresBindings()
            binds.append(replica)
            try c.run("DELETE FROM nms_nodes WHERE replica = $1", binds)
            try c.run("DELETE FROM nms_replicas WHERE name = $1", binds)
        }
        db.withLock { $0.close() }
        for r in readers { r.withLock { $0?.close() } }
    }

    /// Beats, on the database's clock (replicas' clocks may differ), and pings our own
    /// channel: a listener whose connection silently died stops hearing it.
    private func beat() throws {
        var binds = PostgresBindings()
        binds.append(replica)
        binds.append(Self.channel(of: replica))
        _ = try db.withLock {
            try $0.run(
                """
                INSERT INTO nms_replicas(name, heartbeat) VALUES($1, EXTRACT(EPOCH FROM now())::int8)
                ON CONFLICT(name) DO UPDATE SET heartbeat = excluded.heartbeat
                """, binds)
            var ping = PostgresBindings()
            ping.append(Self.channel(of: replica))
            ping.append(Self.ping)
            try $0.run("SELECT pg_notify($1, $2)", ping)
        }
    }

    /// The payload of a replica's ping to itself (not base64 of any message).
    static let ping = "ping"

    /// (Re)subscribes to this replica's channel on a connection of its own.
    private func listen() {
        do {
            let made = try BlockingPostgresConnection(target)
            let connection = try made.connected()
            let context = connection.addListener(channel: Self.channel(of: replica)) { [self] _, notification in
                let payload = notification.payload
                // Off the event loop: handling may query the database.
                inbox.async { self.received(payload) }
            }
            try made.run("LISTEN \(Self.channel(of: replica))")
            listener.withLock { l in
                l?.context.stop()
                l?.connection.close()
                l = (made, context)
            }
        } catch {
            logger.warning("nms: shared directory: cannot listen for other replicas: \(error)")
        }
    }

    private func received(_ payload: String) {
        if payload == Self.ping {
            lastPing.withLock { $0 = monotonicSeconds() }
            return
        }
        guard let bytes = Data(base64Encoded: payload).map(Array.init), let message = try? ReplicaMessage(bytes: bytes) else {
            logger.warning("nms: shared directory: a malformed message from another replica was dropped")
            return
        }
        counters.withLock { $0.received += 1 }
        callbacks.withLock { $0 }?.onMessage(message)
    }

    /// Enters or updates this replica's registration of a node (written within 50 ms).
    public func publish(_ entry: DirectoryEntry) {
        guard let bytes = try? entry.encoded() else { return }
        state.withLock { $0.pending[entry.fqdn] = .publish(bytes) }
    }

    /// Removes this replica's registration of a node (not another replica's).
    public func withdraw(_ fqdn: String) { state.withLock { $0.pending[fqdn] = .withdraw } }

    /// Writes what is pending: one statement for the entries, one for the removals.
    func flush(now: Int64) throws {
        let ops = state.withLock { s -> [String: Op] in
            defer { s.pending = [:] }
            return s.pending
        }
        guard !ops.isEmpty else { return }
        var names: [String] = []
        var records: [ByteBuffer] = []
        var gone: [String] = []
        for (fqdn, op) in ops {
            switch op {
            case .publish(let bytes):
                names.append(fqdn)
                records.append(ByteBuffer(bytes: bytes))
            case .withdraw: gone.append(fqdn)
            }
        }
        do {
            try db.withLock { c in
                if !names.isEmpty {
                    var binds = PostgresBindings()
                    binds.append(names)
                    binds.append(replica)
                    binds.append(records)
                    binds.append(now)
                    try c.run(
                        """
                        INSERT INTO nms_nodes(fqdn, replica, record, updated)
                        SELECT f, $2, r, $4 FROM unnest($1::text[], $3::bytea[]) AS t(f, r)
                        ON CONFLICT(fqdn) DO UPDATE SET replica = excluded.replica, record = excluded.record, updated = excluded.updated
                        """, binds)
                }
                if !gone.isEmpty {
                    var binds = PostgresBindings()
                    binds.append(gone)
                    binds.append(replica)
                    try c.run("DELETE FROM nms_nodes WHERE fqdn = ANY($1::text[]) AND replica = $2", binds)
                }
            }
        } catch {
            // Kept for the next round (unless something newer replaced them meanwhile).
            state.withLock { s in for (k, v) in ops where s.pending[k] == nil { s.pending[k] = v } }
            throw error
        }
        counters.withLock {
            $0.published += names.count
            $0.withdrawn += gone.count
            $0.flushes += 1
        }
    }

    /// Deletes what replicas silent for a minute left behind.
    private func cleanup() throws {
        var binds = PostgresBindings()
        binds.append(Self.forgetSeconds)
        try db.withLock { c in
            try c.run(
                "DELETE FROM nms_nodes WHERE replica IN (SELECT name FROM nms_replicas WHERE heartbeat < EXTRACT(EPOCH FROM now())::int8 - $1)",
                binds)
            try c.run("DELETE FROM nms_replicas WHERE heartbeat < EXTRACT(EPOCH FROM now())::int8 - $1", binds)
        }
    }

    /// Where `fqdn` is registered: the replica, the entry, and whether that replica is
    /// alive (beat within ``staleSeconds``; a dead one's nodes are moving to another).
    public func lookup(_ fqdn: String) throws -> (replica: String, entry: DirectoryEntry, alive: Bool)? {
        counters.withLock { $0.lookups += 1 }
        var binds = PostgresBindings()
        binds.append(fqdn)
        binds.append(Self.staleSeconds)
        let rows = try withReader { c in
            try c.run(
                """
                SELECT n.replica, n.record, COALESCE(r.heartbeat >= EXTRACT(EPOCH FROM now())::int8 - $2, false)
                FROM nms_nodes n LEFT JOIN nms_replicas r ON r.name = n.replica WHERE n.fqdn = $1
                """, binds
            ).rows
        }
        guard let row = rows.first else { return nil }
        let (name, record, alive) = try row.decode((String, ByteBuffer, Bool).self)
        return (name, try DirectoryEntry(bytes: Array(record.readableBytesView)), alive)
    }

    /// Sends `message` to `replica` (NOTIFY on its channel).
    public func send(_ message: ReplicaMessage, to replica: String) throws {
        let payload = Data(try message.encoded()).base64EncodedString()
        var binds = PostgresBindings()
        binds.append(Self.channel(of: replica))
        binds.append(payload)
        _ = try withReader { try $0.run("SELECT pg_notify($1, $2)", binds) }
        counters.withLock { $0.sent += 1 }
    }

    /// Runs `body` on one of the reader connections (round robin, connecting when needed).
    private func withReader<R>(_ body: (BlockingPostgresConnection) throws -> R) throws -> R {
        let slot = readers[nextReader.wrappingAdd(1, ordering: .relaxed).oldValue % Self.readerCount]
        return try slot.withLock { c in
            if c == nil { c = try BlockingPostgresConnection(target) }
            return try body(c!)
        }
    }

    /// Registrations in the directory, per replica (for status and the bench).
    public func counts() throws -> [String: Int] {
        let rows = try db.withLock { try $0.run("SELECT replica, COUNT(*) FROM nms_nodes GROUP BY replica").rows }
        var out: [String: Int] = [:]
        for row in rows {
            let (name, n) = try row.decode((String, Int64).self)
            out[name] = Int(n)
        }
        return out
    }
}
