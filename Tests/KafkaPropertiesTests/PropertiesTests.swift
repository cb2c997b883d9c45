import KafkaProperties
import Testing

@Suite struct PropertiesParsingTests {
    @Test func separatorsBlanksAndComments() throws {
        let text = """
            # a comment
              ! another comment
            a=1
            b : 2
            c 3
            d\t=\t four  \n\
            e
            f=
            g:=x
            """
        let properties = try Properties(parsing: text)
        #expect(properties["a"] == "1")
        #expect(properties["b"] == "2")
        #expect(properties["c"] == "3")
        #expect(properties["d"] == "four  ")
        #expect(properties["e"] == "")
        #expect(properties["f"] == "")
        #expect(properties["g"] == "=x")
        #expect(properties.entries.map(\.key) == ["a", "b", "c", "d", "e", "f", "g"])
    }

    @Test func continuationsAndLineEnds() throws {
        let properties = try Properties(parsing: "list=a,\\\r\n    b,\\\r   c\nnext=1\r\neven=x\\\\\nafter=2")
        #expect(properties["list"] == "a,b,c")
        #expect(properties["next"] == "1")
        #expect(properties["even"] == "x\\")
        #expect(properties["after"] == "2")
    }

    @Test func commentLinesDoNotContinue() throws {
        let properties = try Properties(parsing: "# ends with a backslash \\\nkey=value")
        #expect(properties.dictionary == ["key": "value"])
    }

    @Test func escapes() throws {
        let properties = try Properties(parsing: #"k\=ey\ one=tab\there\u0041\:\x"#)
        #expect(properties["k=ey one"] == "tab\there" + "A:x")
    }

    @Test func malformedUnicodeEscapeNamesTheLine() {
        #expect(throws: PropertiesError.malformedEscape(line: 2)) { try Properties(parsing: "a=1\nb=\\u12G4") }
        #expect(throws: PropertiesError.malformedEscape(line: 1)) { try Properties(parsing: "b=\\u12") }
    }

    @Test func laterDuplicateWinsInFirstPosition() throws {
        let properties = try Properties(parsing: "a=1\nb=2\na=3")
        #expect(properties.entries.map(\.key) == ["a", "b"])
        #expect(properties["a"] == "3")
    }

    @Test func formattedRoundTrips() throws {
        let original = Properties([
            ("cluster.id", "AbC-12_x"), ("weird key=:", " lead space, # and ! and \\ and \t\n"),
            ("unicode", "é\u{01}"), ("empty", ""),
        ])
        let text = original.formatted(comment: ["written by a test"])
        #expect(text.hasPrefix("#written by a test\n"))
        #expect(try Properties(parsing: text) == original)
    }
}

@Suite struct SettingsTableTests {
    static let table = SettingsTable([
        SettingDefinition("segment.bytes", .int, default: .int(1 << 30), validator: .atLeast(14)),
        SettingDefinition("retention.ms", .long, default: .long(604_800_000), validator: .atLeast(-1)),
        SettingDefinition(
            "message.timestamp.type", .string, default: .string("CreateTime"),
            validator: .oneOf(["CreateTime", "LogAppendTime"])
        ),
        SettingDefinition(
            "cleanup.policy", .list, default: .list(["delete"]), validator: .oneOf(["compact", "delete"])
        ),
        SettingDefinition("preallocate", .boolean, default: .boolean(false)),
        SettingDefinition("min.cleanable.dirty.ratio", .double, default: .double(0.5), validator: .between(0, 1)),
        SettingDefinition("node.id", .int, default: nil),
        SettingDefinition("sasl.password", .password, default: .password("")),
    ])

    @Test func defaultsAndExplicitValues() throws {
        let settings = try Self.table.resolve(
            Properties([("node.id", " 3 "), ("cleanup.policy", "compact, delete"), ("preallocate", "TRUE")])
        )
        #expect(settings.int("node.id") == 3)
        #expect(settings.int("segment.bytes") == 1 << 30)
        #expect(settings.long("retention.ms") == 604_800_000)
        #expect(settings.list("cleanup.policy") == ["compact", "delete"])
        #expect(settings.bool("preallocate"))
        #expect(settings.double("min.cleanable.dirty.ratio") == 0.5)
        #expect(settings.isExplicit("node.id"))
        #expect(!settings.isExplicit("segment.bytes"))
        #expect(settings["sasl.password"]?.description == "[hidden]")
    }

    @Test func refusedValuesNameTheSettingAndWhatIsAllowed() {
        func message(_ pairs: [(String, String)]) -> String {
            do {
                _ = try Self.table.resolve(Properties([("node.id", "1")] + pairs))
                return "accepted"
            } catch {
                return error.description
            }
        }
        #expect(
            message([("segment.bytes", "13")])
                == "Invalid value 13 for configuration segment.bytes: Value must be at least 14")
        #expect(
            message([("segment.bytes", "1GB")])
                == "Invalid value 1GB for configuration segment.bytes: Not a number of type INT")
        #expect(message([("segment.bytes", "4294967296")]).contains("Not a number of type INT"))
        #expect(
            message([("message.timestamp.type", "AppendTime")])
                == "Invalid value AppendTime for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"
        )
        #expect(message([("cleanup.policy", "delete,forever")]).contains("String must be one of: compact, delete"))
        #expect(message([("preallocate", "yes")]).contains("Expected value to be either true or false"))
        #expect(message([("min.cleanable.dirty.ratio", "1.5")]).contains("Value must be no more than 1"))
    }

    @Test func missingRequired() {
        #expect(throws: PropertiesError.missingRequired("node.id")) { try Self.table.resolve(Properties()) }
    }

    @Test func unknownKeysSuggestTheNearestName() throws {
        do {
            _ = try Self.table.resolve(Properties([("node.id", "1"), ("segment.byte", "100")]))
            Issue.record("an unknown key was accepted")
        } catch {
            #expect(error == .unknownSetting("segment.byte", suggestion: "segment.bytes"))
            #expect(
                error.from("/etc/topic.properties").description
                    == "/etc/topic.properties: Unknown configuration \"segment.byte\"; did you mean \"segment.bytes\"?")
        }
        #expect(Self.table.suggestion(for: "bytes.segment") == "segment.bytes")
        #expect(Self.table.suggestion(for: "retention.msec") == "retention.ms")
        #expect(Self.table.suggestion(for: "completely.different") == nil)
        let collected = try Self.table.resolve(Properties([("node.id", "1"), ("x.y", "z")]), unknownKeys: .collect)
        #expect(collected.unknown.dictionary == ["x.y": "z"])
    }
}
