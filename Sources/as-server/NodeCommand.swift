import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicPKI
import Foundation

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Enrol, list, show, revoke and remove nodes.",
        subcommands: [Add.self, List.self, Show.self, Revoke.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a node: assigns its FQDN and virtual IPs and prints its one-time enrolment token.")
        @OptionGroup var dataDir: DataDirOption
        @OptionGroup var output: OutputOption
        @Argument(help: "Node name: one DNS label; the FQDN is NAME.DOMAIN.") var name: String?
        @Option(help: "Policy group of the node (in its certificate).") var group: String?
        func validate() throws {
            guard name == nil else { return }
            // A name that looks like an option (`-x`) never reaches `name`: say what it is.
            let typed = CommandLine.arguments.drop { $0 != "add" }.dropFirst()
            let options = ["--data-dir", "--json", "--group", "-h", "--help"]
            if let bad = typed.first(where: { a in a.hasPrefix("-") && !options.contains { a == $0 || a.hasPrefix($0 + "=") } }) {
                throw ValidationError("\(bad) is not a valid node name: one DNS label of letters, digits and '-', not starting or ending with '-'")
            }
            throw ValidationError("give the node's name: as-server node add NAME")
        }

        func run() throws {
            let name = self.name!
            let authority = try ASAuthority(directory: try ASDirectory.open(at: dataDir.path))
            let ticket = try authority.addNode(name: name, group: group)
            if output.json {
                try printJSON(["node": AnyEncodable(ticket.node), "token": AnyEncodable(ticket.token)])
            } else {
                print("added \(ticket.node.fqdn)  \(ticket.node.vip4)  \(ticket.node.vip6)")
                print("enrolment token (shown once, valid for one login):")
                print(ticket.token)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List nodes, and the addresses of removed nodes quarantined while a certificate naming them is valid.")
        @OptionGroup var dataDir: DataDirOption
        @OptionGroup var output: OutputOption

        func run() throws {
            let store = try ASDirectory.openStore(at: dataDir.path)
            let nodes = try store.nodes()
            if output.json { return try printJSON(nodes) }
            let quarantined = try store.quarantinedAddresses(now: unixNow())
            print("NAME".padding(toLength: 16, withPad: " ", startingAt: 0) + "STATE    VIP4             VIP6                        FQDN")
            for n in nodes {
                print(
                    n.name.padding(toLength: 16, withPad: " ", startingAt: 0) + n.state.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                        + n.vip4.padding(toLength: 17, withPad: " ", startingAt: 0) + n.vip6.padding(toLength: 28, withPad: " ", startingAt: 0)
                        + n.fqdn)
            }
            // Addresses of removed nodes that a still-valid certificate names: not reissued yet.
            for q in quarantined {
                print(
                    "(removed \(q.node))".padding(toLength: 16, withPad: " ", startingAt: 0) + "quarantined until \(formatTime(q.until)): "
                        + "\(q.vip4)  \(q.vip6)")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one node.")
        @OptionGroup var dataDir: DataDirOption
        @OptionGroup var output: OutputOption
        @Argument(help: "Node name or FQDN (any case: names are stored in lower case).", transform: { $0.lowercased() })
        var name: String

        func run() throws {
            guard let n = try ASDirectory.openStore(at: dataDir.path).node(named: name) else {
                throw ValidationError("no node named \(name)")
            }
            if output.json { return try printJSON(n) }
            print("name          \(n.name)\nfqdn          \(n.fqdn)\nstate         \(n.state.rawValue)")
            print("group         \(n.group ?? "-")\nvip4          \(n.vip4)\nvip6          \(n.vip6)")
            print("public key    \(n.publicKey ?? "- (not enrolled)")")
            print("certificate   \(n.serial.map { "serial \($0), expires \(formatTime(n.certificateNotAfter))" } ?? "-")")
            print("created       \(formatTime(n.createdAt))\nenrolled      \(formatTime(n.enrolledAt))\nlast login    \(formatTime(n.lastLoginAt))")
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a node: its certificates go on the signed revocation list; it can no longer log in.")
        @OptionGroup var dataDir: DataDirOption
        @Argument(help: "Node name or FQDN (any case: names are stored in lower case).", transform: { $0.lowercased() })
        var name: String

        func run() throws {
            let serials = try ASAuthority(directory: try ASDirectory.open(at: dataDir.path)).revokeNode(name: name)
            print(
                "revoked \(name); "
                    + (serials.isEmpty
                        ? "it had no certificate (never enrolled); its logins are refused from now on"
                        : "certificate serials \(serials.map(String.init).joined(separator: ", ")) on the new revocation list"))
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a node: its certificates are revoked first; its addresses are quarantined until those certificates expire.")
        @OptionGroup var dataDir: DataDirOption
        @Argument(help: "Node name or FQDN (any case: names are stored in lower case).", transform: { $0.lowercased() })
        var name: String

        func run() throws {
            let removed = try ASAuthority(directory: try ASDirectory.open(at: dataDir.path)).removeNode(name: name)
            if let until = removed.quarantinedUntil {
                print(
                    "removed \(removed.name); \(removed.vip4) and \(removed.vip6) are quarantined until \(formatTime(until)) "
                        + "(a certificate naming them is valid until then)")
            } else {
                print("removed \(removed.name); \(removed.vip4) and \(removed.vip6) are free")
            }
        }
    }
}

/// Type-erased `Encodable` for mixed JSON objects.
struct AnyEncodable: Encodable {
    let encodeBody: (Encoder) throws -> Void
    init<T: Encodable>(_ value: T) { encodeBody = value.encode }
    func encode(to encoder: Encoder) throws { try encodeBody(encoder) }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func formatTime(_ t: Int64?) -> String {
    guard let t else { return "-" }
    let f = ISO8601DateFormatter()
    return f.string(from: Date(timeIntervalSince1970: TimeInterval(t)))
}
