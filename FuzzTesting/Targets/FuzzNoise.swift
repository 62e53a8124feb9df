// libFuzzer target: the Noise handshake message reader (XX and IK, both ciphers, each
// message position). Any input must end in a typed NoiseError or a payload, never a trap.
import CyphonicCrypto

private let initiatorStatic = try! X25519PrivateKey(rawRepresentation: [UInt8](repeating: 1, count: 32))
private let responderStatic = try! X25519PrivateKey(rawRepresentation: [UInt8](repeating: 2, count: 32))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNoise(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let selector = data[0]
    let message = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let cipher: AEADAlgorithm = selector & 1 == 0 ? .aes256gcm : .chacha20poly1305
    let ik = selector & 2 != 0
    let pattern: NoisePattern = ik ? .ik : .xx
    let proto = NoiseProtocol(pattern: pattern, cipher: cipher)
    do {
        let initiator = try NoiseHandshake(
            protocol: proto, role: .initiator, localStatic: initiatorStatic,
            remoteStatic: ik ? responderStatic.publicKey : nil)
        let responder = try NoiseHandshake(protocol: proto, role: .responder, localStatic: responderStatic)
        switch (selector >> 2) % 3 {
        case 0:
            _ = try? responder.readMessage(message)  // forged message 1
        case 1:
            _ = try responder.readMessage(try initiator.writeMessage())
            _ = try? initiator.readMessage(message)  // forged message 2
        default:
            guard !ik else { return 0 }
            _ = try responder.readMessage(try initiator.writeMessage())
            _ = try initiator.readMessage(try responder.writeMessage())
            _ = try? responder.readMessage(message)  // forged message 3
        }
    } catch {
        fatalError("honest handshake step failed: \(error)")
    }
    return 0
}
