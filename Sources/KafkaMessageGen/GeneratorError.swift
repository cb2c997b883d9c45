/// Why the generator could not produce code. A plain value: freely shareable across threads.
public struct GeneratorError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case invalidSchema(String)
        case missingFile(String)
        case unsupported(String)
    }

    private let code: Code
    private init(_ code: Code) { self.code = code }

    /// A definition that does not follow Kafka's schema language.
    public static func invalidSchema(_ detail: String) -> GeneratorError { GeneratorError(.invalidSchema(detail)) }
    /// An allowlisted name with no definition file, or an unreadable file.
    public static func missingFile(_ path: String) -> GeneratorError { GeneratorError(.missingFile(path)) }
    /// A schema feature this generator does not implement.
    public static func unsupported(_ detail: String) -> GeneratorError { GeneratorError(.unsupported(detail)) }

    /// Adds the file being processed to the message.
    func inFile(_ file: String) -> GeneratorError {
        switch self.code {
        case .invalidSchema(let detail): .invalidSchema("\(file): \(detail)")
        case .unsupported(let detail): .unsupported("\(file): \(detail)")
        case .missingFile: self
        }
    }

    public var description: String {
        switch self.code {
        case .invalidSchema(let detail): "invalid schema: \(detail)"
        case .missingFile(let path): "missing file: \(path)"
        case .unsupported(let detail): "unsupported: \(detail)"
        }
    }
}
