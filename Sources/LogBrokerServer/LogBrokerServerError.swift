import KafkaProperties

/// Why the broker could not start or serve: a configuration it refuses, a listener it cannot bind.
///
/// A struct around a private enum, built by static factories, so that cases can be added without breaking callers.
/// `description` names the setting, its value and what is allowed (in the words of Kafka's `ConfigException` where
/// there is one), so an operator can fix the file without reading code. A plain value: freely shareable.
public struct LogBrokerServerError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case configuration(PropertiesError)
        case invalidValue(name: String, value: String, reason: String, source: String?)
        case invalidOverride(String)
        case bindFailed(listener: String, reason: String)
        case metadataStoreUnreachable(name: String, value: String, reason: String)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// A setting the settings table refused: bad value, unknown key (with a suggestion), required and missing.
    public static func configuration(_ error: PropertiesError) -> LogBrokerServerError {
        LogBrokerServerError(.configuration(error))
    }

    /// A value that parses but that the broker cannot accept (a malformed listener, an unsupported role).
    public static func invalidValue(
        _ value: String,
        for name: String,
        reason: String,
        source: String? = nil
    ) -> LogBrokerServerError {
        LogBrokerServerError(.invalidValue(name: name, value: value, reason: reason, source: source))
    }

    /// A `--override` argument that is not `key=value`.
    public static func invalidOverride(_ argument: String) -> LogBrokerServerError {
        LogBrokerServerError(.invalidOverride(argument))
    }

    /// A listener whose address could not be bound.
    public static func bindFailed(listener: String, reason: String) -> LogBrokerServerError {
        LogBrokerServerError(.bindFailed(listener: listener, reason: reason))
    }

    /// The metadata store named by setting `name` (`metadata.etcd.endpoints`) did not answer at start: the node
    /// cannot run without its metadata.
    public static func metadataStoreUnreachable(
        setting name: String,
        value: String,
        reason: String
    ) -> LogBrokerServerError {
        LogBrokerServerError(.metadataStoreUnreachable(name: name, value: value, reason: reason))
    }

    /// The setting this error is about, if any.
    public var settingName: String? {
        switch self.code {
        case .configuration(let error): error.settingName
        case .invalidValue(let name, _, _, _), .metadataStoreUnreachable(let name, _, _): name
        case .invalidOverride, .bindFailed: nil
        }
    }

    public var description: String {
        switch self.code {
        case .configuration(let error):
            return error.description
        case .invalidValue(let name, let value, let reason, let source):
            let message = "Invalid value \(value) for configuration \(name): \(reason)"
            return source.map { "\($0): \(message)" } ?? message
        case .invalidOverride(let argument):
            return "Invalid --override \(argument): expected key=value"
        case .bindFailed(let listener, let reason):
            return "Cannot listen on \(listener): \(reason)"
        case .metadataStoreUnreachable(let name, let value, let reason):
            return "Cannot reach the metadata store \(name)=\(value): \(reason)"
        }
    }
}
