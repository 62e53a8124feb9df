import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import CyphonicWire
import Foundation

// Before the daemon starts: enrol (first start with `enroll` configured) or log in to
// the AS with the stored certificate, saving what the AS provisions (a renewed
// certificate, new service endpoints).
extension NodeDaemon {
    func refreshIdentity() throws {
        guard let dir = config.stateDir else { return }
        let state = NodeStateDirectory(path: dir)
        let assignment = try? state.assignment()
        if assignment == nil, let e = config.enroll {
            let server: Endpoint
            do { server = try HostPort.resolve(e.asEndpoint)[0] } catch { throw PlainError("enroll.asEndpoint: \(error)") }
            let ca: Certificate
            do { ca = try Certificate(pem: try readTextFile(e.ca, what: "the CA certificate (config `enroll.ca`)")) } catch {
                throw ConfigFileError.invalid("enroll.ca", "cannot read a PEM certificate from \(e.ca): \(error)")
            }
            let token: String
            do { token = try readEnrolmentToken(path: e.tokenFile) } catch { throw ConfigFileError.invalid("enroll.tokenFile", "\(error)") }
            guard let dot = token.lastIndex(of: "."), dot != token.startIndex else {
                throw ConfigFileError.invalid("enroll.tokenFile", "expected NAME.SECRET as printed by `as-server node add`")
            }
            let key = try state.loadOrCreateKey()
            let provision = try ASClient(server: server, caCertificate: ca).login(
                name: String(token[..<dot]), credential: .token(token), key: key)
            // As given (a DNS name stays a name, resolved at each login: the AS may move).
            try state.save(provision, name: String(token[..<dot]), asEndpoint: e.asEndpoint)
            logger.info("node: enrolled as \(provision.fqdn) (\(provision.virtualIPv4), \(provision.virtualIPv6)) with the AS at \(server)")
            return
        }
        guard let assignment, config.login, config.asEndpoint != "" else { return }
        guard let server = try? HostPort.resolve(config.asEndpoint ?? assignment.asEndpoint).first else { return }
        do {
            var client = ASClient(server: server, caCertificate: try state.caCertificate())
            client.timeoutMilliseconds = 500
            client.attempts = 2
            let stored = try state.certificate()
            let provision = try client.login(
                name: assignment.name, credential: .certificate(der: stored.derBytes), key: try state.loadOrCreateKey())
            try state.save(provision, name: assignment.name, asEndpoint: assignment.asEndpoint)
            if provision.certificate != stored.derBytes {
                logger.info(
                    "node: the AS renewed our certificate (serial \(stored.serial.map(String.init) ?? "?") → \((try? Certificate(der: provision.certificate))?.serial.map(String.init) ?? "?"))"
                )
            } else {
                logger.info("node: logged in to the AS at \(server) as \(provision.fqdn)")
            }
        } catch {
            logger.warning("node: login to the AS at \(server) failed (\(error)); starting with the stored certificate")
        }
    }

    /// Logs in to the AS every `loginRefreshSeconds` while running: a certificate the AS
    /// renews (in its last `renew-before-days`) is saved and used for every handshake and
    /// the NMS registration from then on, so a daemon never runs into its expiry.
    func startRenewal(key: X25519PrivateKey, certificate: Certificate) -> PeriodicRefresher<Provision>? {
        guard let dir = config.stateDir, config.login, config.asEndpoint != "" else { return nil }
        let state = NodeStateDirectory(path: dir)
        guard let assignment = try? state.assignment(), let server = try? HostPort.resolve(config.asEndpoint ?? assignment.asEndpoint).first,
            let ca = try? state.caCertificate()
        else { return nil }
        let current = Locked(certificate.derBytes)
        let client = ASClient(server: server, caCertificate: ca)
        let refresher = PeriodicRefresher<Provision>(
            what: "a login to the AS at \(server) (certificate renewal)", intervalSeconds: config.loginRefreshSeconds, logger: logger,
            fetch: { try client.login(name: assignment.name, credential: .certificate(der: current.withLock { $0 }), key: key) },
            apply: { [weak self] provision in
                guard let self, provision.certificate != current.withLock({ $0 }), let renewed = try? Certificate(der: provision.certificate)
                else { return }
                do { try state.save(provision, name: assignment.name, asEndpoint: assignment.asEndpoint) } catch {
                    self.logger.error("node: cannot save the renewed certificate in \(dir): \(error)")
                }
                current.withLock { $0 = provision.certificate }
                self.manager?.replaceCertificate(renewed)
                self.signaling?.replaceCertificate(renewed)
                self.logger.info(
                    "node: the AS renewed our certificate (serial \(renewed.serial.map(String.init) ?? "?"), valid until \(renewed.notAfter.map(String.init) ?? "?")); in use now"
                )
            })
        return refresher
    }

    /// The NMS endpoints: config `nms`, else the provision's (stateDir/node.json).
    func nmsEndpoints() -> [Endpoint] {
        // Names are resolved at start (both families); a name that does not resolve is logged.
        if let list = config.nms {
            return list.flatMap { text -> [Endpoint] in
                do { return try HostPort.resolve(text) } catch {
                    logger.warning("node: NMS \(text) left out: \(error)")
                    return []
                }
            }
        }
        guard let dir = config.stateDir, let a = try? NodeStateDirectory(path: dir).assignment() else { return [] }
        return a.nmsEndpoints.compactMap(Endpoint.init)
    }
}

/// Reads a one-time enrolment token from a file (`-`: standard input); a trailing
/// newline is ignored. Errors say what is wrong with the file.
public func readEnrolmentToken(path: String) throws -> String {
    let data: Data
    if path == "-" {
        data = FileHandle.standardInput.readDataToEndOfFile()
    } else {
        do { data = Data(try readTextFile(path, what: "the token file").utf8) } catch {
            throw TokenFileError(description: error.description)
        }
    }
    let source = path == "-" ? "standard input" : path
    var bytes = [UInt8](data)
    while let last = bytes.last, last == 0x0a || last == 0x0d { bytes.removeLast() }
    guard bytes.count <= 1024, let text = String(validating: bytes, as: UTF8.self) else {
        throw TokenFileError(description: "\(source) does not hold a token (UTF-8 text, at most 1 KiB)")
    }
    guard !text.isEmpty else { throw TokenFileError(description: "\(source) is empty") }
    return text
}

/// A token file that holds no token; says why.
public struct TokenFileError: Error, CustomStringConvertible {
    public let description: String
}
