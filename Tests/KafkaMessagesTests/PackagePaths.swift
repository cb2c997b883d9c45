import Foundation
import KafkaMessageGen

/// The package root, found from this file's path (Tests/KafkaMessagesTests/PackagePaths.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Every allowlisted schema, parsed once from the vendored definitions.
let allSchemas: [MessageSchema] = {
    do {
        return try MessageGenerator(packageRoot: packageRoot).loadSchemas()
    } catch {
        fatalError("cannot load the vendored definitions: \(error)")
    }
}()
