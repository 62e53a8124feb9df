import CyphonicDNS
import NIOCore

/// One UDP query per datagram; the answer goes back to its source from this channel.
final class DNSUDPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let resolver: NodeResolver

    init(resolver: NodeResolver) { self.resolver = resolver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let remote = envelope.remoteAddress
        let channel = context.channel
        guard envelope.data.readableBytes <= DNSQuery.maxMessageSize else {
            resolver.count { $0.dropped += 1 }
            return
        }
        resolver.answer(Array(envelope.data.readableBytesView), transport: .udp) { response in
            let buffer = channel.allocator.buffer(bytes: response)
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: buffer), promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An ICMP error for an earlier answer (the client went away): nothing to do.
    }
}

/// RFC 1035 §4.2.2 framing on one TCP connection; answers are framed in the order they
/// complete. At most `maxTCPConnections` connections at once (others are closed at
/// once); a connection idle for 10 s is closed; a zero-length or oversized frame closes it.
final class DNSTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let resolver: NodeResolver
    private var framer = DNSTCPFramer()
    private var counted = false

    init(resolver: NodeResolver) { self.resolver = resolver }

    func channelActive(context: ChannelHandlerContext) {
        let now = resolver.tcpConnections.add(1, ordering: .relaxed).newValue
        counted = true
        if now > resolver.config.maxTCPConnections {
            resolver.count { $0.tcpRefused += 1 }
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted { resolver.tcpConnections.subtract(1, ordering: .relaxed) }
        counted = false
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let messages: [[UInt8]]
        do { messages = try framer.append(buffer.readableBytesView) } catch {
            resolver.count { $0.dropped += 1 }
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        for m in messages {
            resolver.answer(m, transport: .tcp) { response in
                channel.writeAndFlush(channel.allocator.buffer(bytes: DNSTCPFramer.frame(response)), promise: nil)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
