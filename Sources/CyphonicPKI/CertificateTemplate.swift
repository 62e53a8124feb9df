import CyphonicCore
import CyphonicCrypto

/// What a certificate will say: the CA fills in issuer and signature. Node and service
/// certificates bind an X25519 static key to a name (CN and SAN DNS) and, for nodes,
/// to their virtual IPs (SAN IP).
public struct CertificateTemplate: Sendable {
    public var role: CertificateRole
    /// Subject CN: the FQDN of a node or service.
    public var commonName: String
    public var dnsNames: [String]
    public var ipAddresses: [IPAddress]
    /// Policy group of a node (subject `description`), nil for none.
    public var group: String?
    public var serial: UInt64
    public var notBefore: Int64
    public var notAfter: Int64

    public init(
        role: CertificateRole, commonName: String, dnsNames: [String] = [], ipAddresses: [IPAddress] = [],
        group: String? = nil, serial: UInt64, notBefore: Int64, notAfter: Int64
    ) {
        self.role = role
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.group = group
        self.serial = serial
        self.notBefore = notBefore
        self.notAfter = notAfter
    }

    /// A node certificate for `fqdn` with its virtual IPv4 and IPv6 addresses.
    public static func node(
        fqdn: FQDN, addresses: [IPAddress], group: String? = nil, serial: UInt64,
        validFrom: Int64, days: Int
    ) -> CertificateTemplate {
        CertificateTemplate(
            role: .node, commonName: fqdn.value, dnsNames: [fqdn.value], ipAddresses: addresses,
            group: group, serial: serial, notBefore: validFrom, notAfter: validFrom + Int64(days) * 86_400)
    }

    /// A service (AS, NMS, TRS) certificate for `name`.
    public static func service(
        _ role: CertificateRole, name: FQDN, serial: UInt64, validFrom: Int64, days: Int
    )
        -> CertificateTemplate
    {
        CertificateTemplate(
            role: role, commonName: name.value, dnsNames: [name.value], serial: serial,
            notBefore: validFrom, notAfter: validFrom + Int64(days) * 86_400)
    }

    /// The subjectAltName value in OpenSSL's config syntax, or nil if there is none.
    var subjectAltNameConfig: String? {
        let parts = dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }
        return parts.isEmpty ? nil : parts.joined(separator: ",")
    }

    /// Checks what OpenSSL's config syntax could misread (commas, colons, control bytes).
    func validate() throws(PKIError) {
        guard notAfter > notBefore else { throw .malformed("notAfter must follow notBefore") }
        guard serial > 0 else { throw .malformed("serial must be positive") }
        // SAN values go through OpenSSL's config syntax: no separators or spaces.
        for name in dnsNames {
            guard !name.isEmpty, name.utf8.count <= 253,
                name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: ":") })
            else { throw .malformed("DNS name \"\(name)\" has characters not allowed in a certificate") }
        }
        // Subject attributes are set directly: printable, at most 64 bytes (X.520 upper bound).
        for value in [commonName] + (group.map { [$0] } ?? []) {
            guard !value.isEmpty, value.utf8.count <= 64, value.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7f })
            else { throw .malformed("subject value \"\(value)\" is empty, too long or has control characters") }
        }
    }
}
