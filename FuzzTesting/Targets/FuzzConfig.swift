// libFuzzer target: the config files' front end (CyphonicCore JSONSyntax) — comment blanking
// and the strict syntax check every config file passes before decoding. Properties checked
// besides "never traps" (however deep the nesting): blanking keeps the length and every line
// break where it was (so errors keep their line and column), is idempotent, and changes only
// bytes to spaces; a document that passes the check still passes once blanked.
import CyphonicCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    let blanked = JSONSyntax.blankingComments(bytes)
    guard blanked.count == bytes.count else { fatalError("blanking changed the length") }
    for (a, b) in zip(bytes, blanked) where a != b {
        guard b == 0x20, a != 0x0a else { fatalError("blanking changed a byte into something other than a space, or a line break") }
    }
    guard JSONSyntax.blankingComments(blanked) == blanked else { fatalError("blanking is not idempotent") }
    let plainOK = (try? JSONSyntax.check(bytes)) != nil
    let blankedOK = (try? JSONSyntax.check(blanked)) != nil
    // Valid JSON has no `//` outside strings, so blanking cannot break it.
    if plainOK, !blankedOK { fatalError("a valid document became invalid once blanked") }
    return 0
}
