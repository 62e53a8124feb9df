import CyphonicCore
import CyphonicCrypto
import Foundation
import Testing

@testable import CyphonicPKI

/// What we issue must be readable and verifiable by the `openssl` command-line tool.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs /usr/bin/openssl"))
struct OpenSSLInteropTests {
    @Test func opensslReadsAndVerifiesWhatWeIssue() throws {
        let pki = try TestPKI()
        let foreign = try TestPKI()
        try withTemporaryDirectory { dir in
            let ca = dir.appendingPathComponent("ca.pem")
            let node = dir.appendingPathComponent("node.pem")
            let other = dir.appendingPathComponent("foreign-node.pem")
            try pki.ca.certificate.pemString.write(to: ca, atomically: true, encoding: .utf8)
            try pki.node.pemString.write(to: node, atomically: true, encoding: .utf8)
            try foreign.node.pemString.write(to: other, atomically: true, encoding: .utf8)

            let text = try run("/usr/bin/openssl", ["x509", "-text", "-noout", "-in", node.path])
            #expect(text.status == 0)
            #expect(text.output.contains("DNS:init01.cyphonic.internal"))
            #expect(text.output.contains("IP Address:198.18.0.11"))
            #expect(text.output.contains("IP Address:2001:DB8:C0FF:EE:0:0:0:11"))
            #expect(text.output.contains("X25519"))
            #expect(text.output.contains("ED25519"))
            #expect(text.output.contains("OU = node"))
            #expect(text.output.contains("Key Agreement"))

            let good = try run("/usr/bin/openssl", ["verify", "-CAfile", ca.path, node.path])
            print("openssl verify (ours):", good.output.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(good.status == 0 && good.output.contains(": OK"))
            let bad = try run("/usr/bin/openssl", ["verify", "-CAfile", ca.path, other.path])
            print("openssl verify (foreign):", bad.output.split(separator: "\n").joined(separator: " | "))
            #expect(bad.status != 0)
            #expect(!bad.output.contains(": OK"))
        }
    }

    @Test func opensslHonoursOurRevocationList() throws {
        let pki = try TestPKI()
        try withTemporaryDirectory { dir in
            let ca = dir.appendingPathComponent("ca.pem")
            let node = dir.appendingPathComponent("node.pem")
            let crl = dir.appendingPathComponent("crl.pem")
            try pki.ca.certificate.pemString.write(to: ca, atomically: true, encoding: .utf8)
            try pki.node.pemString.write(to: node, atomically: true, encoding: .utf8)
            let list = try RevocationList.sign(by: pki.ca, serials: [1001], number: 1, nextUpdate: pki.now + 3600)
            try list.pemString.write(to: crl, atomically: true, encoding: .utf8)
            let text = try run("/usr/bin/openssl", ["crl", "-text", "-noout", "-in", crl.path])
            #expect(text.status == 0 && text.output.contains("Serial Number: 03E9"))
            let revoked = try run("/usr/bin/openssl", ["verify", "-crl_check", "-CRLfile", crl.path, "-CAfile", ca.path, node.path])
            #expect(revoked.status != 0 && revoked.output.contains("revoked"))
        }
    }

    @Test func opensslReadsOurKeyFiles() throws {
        try withTemporaryDirectory { dir in
            let file = dir.appendingPathComponent("key.pem")
            let key = try X25519PrivateKey()
            try KeyFiles.pem(key).write(to: file, atomically: true, encoding: .utf8)
            let out = try run("/usr/bin/openssl", ["pkey", "-in", file.path, "-noout", "-text"])
            #expect(out.status == 0 && out.output.contains("X25519"))
        }
    }
}
