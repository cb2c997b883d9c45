/// How JSON names become Swift names.
///
/// Types keep their JSON names. Fields become lowerCamelCase, with swift-protobuf's rule for abbreviations:
/// a word `Id`, `Ids`, `Url` or `Http` is written in capitals (`ProducerId` → `producerID`, `TopicIds` →
/// `topicIDs`), except at the start of the name (`Id` → `id`).
public enum Naming {
    private static let capitalizedWords: [String: String] = [
        "id": "ID", "ids": "IDs", "url": "URL", "urls": "URLs", "http": "HTTP", "https": "HTTPS",
    ]

    /// Splits `GroupInstanceId` into `Group`, `Instance`, `Id`, and `ISRNodes` into `ISR`, `Nodes`.
    static func words(_ name: String) -> [String] {
        let characters = Array(name)
        var words: [String] = []
        var current = ""
        for (index, character) in characters.enumerated() {
            if !current.isEmpty, character.isUppercase {
                let previous = characters[index - 1]
                let nextIsLower = index + 1 < characters.count && characters[index + 1].isLowercase
                if previous.isLowercase || previous.isNumber || (previous.isUppercase && nextIsLower) {
                    words.append(current)
                    current = ""
                }
            }
            current.append(character)
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// The Swift property name for a JSON field name, without keyword escaping.
    public static func fieldName(_ jsonName: String) -> String {
        let words = self.words(jsonName)
        guard let first = words.first else { return jsonName }
        var result = first.lowercased()
        for word in words.dropFirst() {
            result += self.capitalizedWords[word.lowercased()] ?? (word.prefix(1).uppercased() + word.dropFirst())
        }
        return result
    }

    private static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init", "inout",
        "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public", "rethrows",
        "static", "struct", "subscript", "typealias", "var", "break", "case", "catch", "continue", "default",
        "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "throw", "switch",
        "where", "while", "as", "await", "false", "is", "nil", "self", "super", "throws", "true", "try", "Type",
        "Self", "Any",
    ]

    /// The identifier as it must be written in declarations and references.
    public static func escaped(_ identifier: String) -> String {
        self.keywords.contains(identifier) ? "`\(identifier)`" : identifier
    }
}
