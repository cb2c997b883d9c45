import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Why a TCP connect failed, in the few words a command-line tool prints after "cannot connect to HOST:PORT:"
/// ("connection refused", "connection timed out", "unknown host"), rather than NIO's error values in full.
/// Stateless.
public enum ConnectFailure {
    /// The reason behind `error`, thrown by a connect: the first address's failure when NIO tried several.
    public static func reason(_ error: any Error) -> String {
        switch error {
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first { return Self.reason(first.error) }
            if error.dnsAError != nil || error.dnsAAAAError != nil { return "unknown host" }
            return "no address to connect to"
        case let error as IOError:
            let text = String(cString: strerror(error.errnoCode))
            return text.prefix(1).lowercased() + text.dropFirst()
        case ChannelError.connectTimeout:
            return "connection timed out"
        case is SocketAddressError.UnknownHost:
            return "unknown host"
        default:
            return "\(error)"
        }
    }
}
