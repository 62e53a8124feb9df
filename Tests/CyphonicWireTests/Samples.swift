import CyphonicCore
import CyphonicWire

/// One of every message, with every optional field both present and absent.
enum Samples {
    static let v4 = Endpoint("198.19.1.2:30000")!
    static let v6 = Endpoint("[2001:db8:1::2]:30000")!
    static let fqdn = try! FQDN("init01.cyphonic.internal")

    static let datagrams: [Datagram] = [
        Datagram(.handshakeInitiation(senderIndex: 7, noise: Array(repeating: 1, count: 32)), counter: 99),
        Datagram(.handshakeResponse(senderIndex: 8, noise: Array(repeating: 2, count: 96)), receiverIndex: 7),
        Datagram(.handshakeCompletion(noise: Array(repeating: 3, count: 64)), receiverIndex: 8),
        Datagram(.signaling(ciphertext: Array(repeating: 4, count: 40)), receiverIndex: 8, counter: 1),
        Datagram(.tunnelRequest(senderIndex: 9, pathID: 0xdead_beef, noise: Array(repeating: 5, count: 48))),
        Datagram(.tunnelResponse(senderIndex: 10, noise: Array(repeating: 6, count: 48)), receiverIndex: 9),
        Datagram(.capsule(ciphertext: Array(repeating: 7, count: 1436)), receiverIndex: 10, counter: UInt64.max - 1),
        Datagram(.capsule(ciphertext: Array(repeating: 7, count: 16)), flags: .control, receiverIndex: 10, counter: 2),
        Datagram(.holePunching(HolePunch(pathID: 1, senderNodeID: 2, authenticator: Array(repeating: 8, count: 16)))),
        Datagram(.holePunchingForOptimization(HolePunch(pathID: 3, senderNodeID: 4, authenticator: Array(repeating: 9, count: 16)))),
        Datagram(.natProbe(token: Array(0..<16)), receiverIndex: 11),
        Datagram(.error(message: "rate limited, try later"), status: .rateLimited, counter: 5),
        Datagram(.cookieReply(cookie: Array(100..<116)), receiverIndex: 9),
    ]

    static let signaling: [SignalingMessage] = [
        .init(transactionID: 1, body: .login(Login(name: "init01", credential: .token("tok-123")))),
        .init(transactionID: 2, body: .login(Login(name: "init01", credential: .certificate(der: [0x30, 1, 2])))),
        .init(
            transactionID: 3,
            body: .provision(
                Provision(
                    nodeID: 42, fqdn: fqdn, virtualIPv4: IPAddress("198.18.0.11")!, virtualIPv6: IPAddress("2001:db8:c0ff:ee::11")!,
                    certificate: Array(repeating: 0x30, count: 600), caCertificate: Array(repeating: 0x31, count: 500),
                    nmsEndpoints: [v4, v6], trsEndpoints: [v6]))),
        .init(transactionID: 4, body: .registration(Registration(certificate: [0x30, 3, 1, 2, 3], localEndpoints: [v4, v6]))),
        .init(transactionID: 5, body: .registration(Registration(certificate: [], localEndpoints: []))),
        .init(
            transactionID: 6,
            body: .registrationAck(
                RegistrationAck(
                    observed: v4, keepAliveSeconds: 5,
                    probeToken: Array(repeating: 1, count: 16), probeEndpoints: [v4], signingCertificate: [0x30, 0]))),
        .init(transactionID: 7, body: .keepAlive),
        .init(transactionID: 8, body: .keepAliveAck(observed: v6)),
        .init(transactionID: 9, body: .directionRequest(target: fqdn)),
        .init(transactionID: 9, body: .directionRequest(target: fqdn, avoidRelay: Endpoint("198.19.0.3:4503")!)),
        .init(
            transactionID: 10,
            body: .routeDirection(
                RouteDirection(
                    pathID: 77, processCode: .natTraversal, role: .initiator, peerNodeID: 12, peerFQDN: fqdn,
                    peerVirtualIPv4: IPAddress("198.18.0.12")!, peerVirtualIPv6: IPAddress("2001:db8:c0ff:ee::12")!,
                    peerStaticKey: Array(repeating: 0xab, count: 32), peerEndpoints: [v4, v6], relay: v6, expires: 1_800_000_000,
                    authorization: Array(repeating: 0xcd, count: 80)))),
        .init(
            transactionID: 11,
            body: .routeDirection(
                RouteDirection(
                    pathID: 78, processCode: .direct, role: .responder, peerNodeID: 13, peerFQDN: fqdn,
                    peerVirtualIPv4: IPAddress("198.18.0.13")!, peerVirtualIPv6: IPAddress("2001:db8:c0ff:ee::13")!,
                    peerStaticKey: Array(repeating: 0xab, count: 32), peerEndpoints: [], relay: nil, expires: 0, authorization: []))),
        .init(transactionID: 12, body: .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: 77, status: .ok, localEndpoints: [v4]))),
        .init(transactionID: 13, body: .finalization(.shutdown)),
        .init(transactionID: 14, body: .error(code: .revoked, message: "certificate revoked")),
        .init(transactionID: 15, body: .revocationListRequest(haveNumber: 3)),
        .init(transactionID: 16, body: .revocationList(der: Array(repeating: 0x30, count: 300))),
        .init(
            transactionID: 17, body: .natProbeResult(NATProbeResult(primary: v4, probe: Endpoint("198.19.1.2:40001")!, mapping: .endpointDependent))),
        .init(transactionID: 18, body: .natProbeResult(NATProbeResult(primary: v6, probe: nil, mapping: .none))),
        .init(transactionID: 19, body: .revocationListPartRequest(number: 7, offset: 1024)),
        .init(transactionID: 20, body: .revocationListPart(number: 7, offset: 1024, total: 3000, bytes: Array(repeating: 0x30, count: 1024))),
        .init(
            transactionID: 21,
            body: .relayRequest(
                RelayRequest(
                    pathID: 99, authorization: Array(repeating: 0x11, count: 148), signingCertificate: Array(repeating: 0x30, count: 300),
                    sessionIndices: [7, 0xdead_beef]))),
        .init(transactionID: 22, body: .relayRequest(RelayRequest(pathID: 1, authorization: [], signingCertificate: []))),
        .init(transactionID: 23, body: .relayGrant(RelayGrant(pathID: 99, peerBound: true, idleSeconds: 90))),
        .init(
            transactionID: 24,
            body: .authorizationRenewal(peer: fqdn, authorization: Array(repeating: 0x11, count: 180))),
    ]
}
