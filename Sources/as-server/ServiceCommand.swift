import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicPKI
import CyphonicPosix
import Foundation

struct ServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service", abstract: "Issue and list NMS/TRS service certificates.",
        subcommands: [Add.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Write a key + certificate bundle for an NMS or TRS host: NAME.key (0600), NAME.pem, ca.pem; for an NMS also NAME.sign.key (0600) and NAME.sign.pem, the Ed25519 key it signs route authorizations with. NAME is the service FQDN."
        )
        @OptionGroup var dataDir: DataDirOption
        @Argument(help: "nms or trs.") var role: String
        @Argument(help: "Service name (FQDN), e.g. nms.cyphonic.internal.") var name: String
        @Option(help: "Directory to write the bundle into.") var out = "."
        @Option(help: "Certificate lifetime in days.") var days = 365

        func run() throws {
            guard let r = CertificateRole(rawValue: role), r == .nms || r == .trs else {
                throw ValidationError("role: \(role) must be nms or trs")
            }
            let fqdn: FQDN
            do { fqdn = try FQDN(name) } catch { throw ValidationError("name: \(error)") }
            // Where the bundle goes is checked before anything is issued: a failed write
            // must not leave a certificate behind that nobody holds.
            // An existing directory must be ours alone: in one others may write to, a key
            // or the CA certificate could be swapped before the bundle is installed.
            var st = stat()
            if lstat(out, &st) == 0 {
                do { try checkPrivateDirectory(out) } catch { throw ValidationError("--out: \(error)") }
            } else {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            let target = (out as NSString).appendingPathComponent(fqdn.value)
            for suffix in [".key", ".pem", ".sign.key", ".sign.pem"] where FileManager.default.fileExists(atPath: target + suffix) {
                throw ValidationError("--out: \(target + suffix) exists; refusing to overwrite a bundle")
            }
            guard FileManager.default.isWritableFile(atPath: out) else { throw ValidationError("--out: \(out) is not writable") }
            let authority = try ASAuthority(directory: try ASDirectory.open(at: dataDir.path))
            let bundle = try authority.addService(role: r, name: fqdn, days: days)
            let (key, cert) = (bundle.key, bundle.certificate)
            let base = (out as NSString).appendingPathComponent(fqdn.value)
            // Keys 0600 from the first byte, never over or through an existing file.
            try writeNewFile(base + ".key", try KeyFiles.pem(key), mode: 0o600)
            try writeNewFile(base + ".pem", cert.pemString, mode: 0o644)
            var written = ["\(base).key", "\(base).pem"]
            if let signing = bundle.signing {
                try writeNewFile(base + ".sign.key", try KeyFiles.pem(signing.key), mode: 0o600)
                try writeNewFile(base + ".sign.pem", signing.certificate.pemString, mode: 0o644)
                written += ["\(base).sign.key", "\(base).sign.pem"]
            }
            // One ca.pem serves every bundle in the directory: kept if it is this CA's.
            let caPath = (out as NSString).appendingPathComponent("ca.pem")
            let caText = authority.directory.ca.certificate.pemString
            if let existing = try? readTextFile(caPath, what: "ca.pem") {
                guard existing == caText else { throw ValidationError("--out: \(caPath) holds another CA's certificate") }
            } else {
                try writeNewFile(caPath, caText, mode: 0o644)
            }
            written.append(caPath)
            print("wrote \(written.joined(separator: ", ")) for \(r.rawValue) \(fqdn)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List issued service certificates.")
        @OptionGroup var dataDir: DataDirOption
        @OptionGroup var output: OutputOption

        func run() throws {
            let services = try ASDirectory.openStore(at: dataDir.path).services()
            if output.json { return try printJSON(services) }
            for s in services {
                print("\(s.role.padding(toLength: 5, withPad: " ", startingAt: 0)) \(s.name)  serial \(s.serial)  expires \(formatTime(s.notAfter))")
            }
        }
    }
}
