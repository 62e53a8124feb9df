import CyphonicCore
import CyphonicPKI
import CyphonicSignaling
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
            let server = Endpoint(e.asEndpoint)!
            let ca: Certificate
            do { ca = try Certificate(pem: try String(contentsOfFile: e.ca, encoding: .utf8)) } catch {
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
            try state.save(provision, name: String(token[..<dot]), asEndpoint: server)
            logger.info("node: enrolled as \(provision.fqdn) (\(provision.virtualIPv4), \(provision.virtualIPv6)) with the AS at \(server)")
            return
        }
        guard let assignment, config.login, config.asEndpoint != "" else { return }
        guard let server = Endpoint(config.asEndpoint ?? assignment.asEndpoint) else { return }
        do {
            var client = ASClient(server: server, caCertificate: try state.caCertificate())
            client.timeoutMilliseconds = 500
            client.attempts = 2
            let stored = try state.certificate()
            let provision = try client.login(
                name: assignment.name, credential: .certificate(der: stored.derBytes), key: try state.loadOrCreateKey())
            try state.save(provision, name: assignment.name, asEndpoint: server)
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

    /// The NMS endpoints: config `nms`, else the provision's (stateDir/node.json).
    func nmsEndpoints() -> [Endpoint] {
        if let list = config.nms { return list.compactMap(Endpoint.init) }
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
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TokenFileError(description: "cannot read \(path): \(error.localizedDescription)")
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
