import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import Logging

/// The revocation list in the file at `path` (PEM), checked to be signed by `ca`.
/// Errors name the file and what is wrong with it.
public func loadRevocationList(_ path: String, issuedBy ca: Certificate) throws -> RevocationList {
    let list = try RevocationList(pem: try readTextFile(path, what: "the revocation list"))
    try list.verify(issuedBy: ca)
    return list
}

extension ASClient {
    /// Fetches the CA's revocation list from this AS every `seconds` (a handshake proving
    /// `key`) and hands every list to `apply`; what the node, the NMS and the relay run.
    public func revocationRefresher(
        key: X25519PrivateKey, every seconds: Double, logger: Logger, apply: @escaping @Sendable (RevocationList) -> Void
    ) -> PeriodicRefresher<RevocationList> {
        PeriodicRefresher<RevocationList>(
            what: "the revocation list from the AS at \(server)", intervalSeconds: seconds, logger: logger,
            fetch: { try self.revocationList(key: key) }, apply: apply)
    }
}
