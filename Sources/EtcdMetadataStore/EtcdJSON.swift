import FoundationEssentials

// The JSON shapes of etcd 3.4's gRPC gateway (`/v3/...`): the protobuf messages of etcd's rpc.proto and kv.proto
// with their proto field names, bytes as base64 and int64 as decimal strings. Fields at their zero value are
// left out of answers, so every answer field is optional.

/// An int64 as the gateway writes it: a decimal string (a bare number is accepted too).
struct EtcdInt64: Codable, Hashable, Sendable {
    var value: Int64

    init(_ value: Int64) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self), let value = Int64(text) {
            self.value = value
        } else {
            self.value = try container.decode(Int64.self)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(self.value))
    }
}

/// Bytes as base64.
struct EtcdBytes: Codable, Hashable, Sendable {
    var bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not base64"))
        }
        self.bytes = Array(data)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(self.bytes).base64EncodedString())
    }
}

struct EtcdHeader: Decodable {
    var revision: EtcdInt64?
}

/// `mvccpb.KeyValue`.
struct EtcdKeyValue: Decodable {
    var key: EtcdBytes
    var value: EtcdBytes?
    var createRevision: EtcdInt64?
    var modRevision: EtcdInt64?
    var lease: EtcdInt64?

    enum CodingKeys: String, CodingKey {
        case key, value, lease
        case createRevision = "create_revision"
        case modRevision = "mod_revision"
    }
}

/// `RangeRequest`.
struct EtcdRangeRequest: Encodable {
    var key: EtcdBytes
    var rangeEnd: EtcdBytes?
    var limit: EtcdInt64?
    var revision: EtcdInt64?
    var countOnly: Bool?

    enum CodingKeys: String, CodingKey {
        case key, limit, revision
        case rangeEnd = "range_end"
        case countOnly = "count_only"
    }
}

/// `RangeResponse`.
struct EtcdRangeResponse: Decodable {
    var header: EtcdHeader?
    var kvs: [EtcdKeyValue]?
    var more: Bool?
}

/// `Compare`.
struct EtcdCompare: Encodable {
    var key: EtcdBytes
    var target: String
    var result = "EQUAL"
    var modRevision: EtcdInt64?
    var createRevision: EtcdInt64?
    var value: EtcdBytes?

    enum CodingKeys: String, CodingKey {
        case key, target, result, value
        case modRevision = "mod_revision"
        case createRevision = "create_revision"
    }
}

/// `RequestOp`: one of a put, a delete or a range.
struct EtcdRequestOp: Encodable {
    struct Put: Encodable {
        var key: EtcdBytes
        var value: EtcdBytes
        var lease: EtcdInt64?
    }

    struct Delete: Encodable {
        var key: EtcdBytes
    }

    var requestPut: Put?
    var requestDeleteRange: Delete?
    var requestRange: EtcdRangeRequest?

    enum CodingKeys: String, CodingKey {
        case requestPut = "request_put"
        case requestDeleteRange = "request_delete_range"
        case requestRange = "request_range"
    }
}

/// `TxnRequest`.
struct EtcdTxnRequest: Encodable {
    var compare: [EtcdCompare]
    var success: [EtcdRequestOp]
    var failure: [EtcdRequestOp]
}

/// `TxnResponse`.
struct EtcdTxnResponse: Decodable {
    struct ResponseOp: Decodable {
        var responseRange: EtcdRangeResponse?

        enum CodingKeys: String, CodingKey {
            case responseRange = "response_range"
        }
    }

    var header: EtcdHeader?
    var succeeded: Bool?
    var responses: [ResponseOp]?
}

/// `LeaseGrantRequest`, `LeaseKeepAliveRequest`, `LeaseRevokeRequest` (`TTL` and `ID` are the proto's names).
struct EtcdLeaseRequest: Encodable {
    var id: EtcdInt64?
    var ttl: EtcdInt64?

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case ttl = "TTL"
    }
}

/// `LeaseGrantResponse` and `LeaseKeepAliveResponse`.
struct EtcdLeaseResponse: Decodable {
    var header: EtcdHeader?
    var id: EtcdInt64?
    var ttl: EtcdInt64?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case header, error
        case id = "ID"
        case ttl = "TTL"
    }
}

/// `CompactionRequest`.
struct EtcdCompactionRequest: Encodable {
    var revision: EtcdInt64
    var physical: Bool
}

/// `WatchRequest` with a `create_request`.
struct EtcdWatchRequest: Encodable {
    struct Create: Encodable {
        var key: EtcdBytes
        var rangeEnd: EtcdBytes
        var startRevision: EtcdInt64

        enum CodingKeys: String, CodingKey {
            case key
            case rangeEnd = "range_end"
            case startRevision = "start_revision"
        }
    }

    var createRequest: Create

    enum CodingKeys: String, CodingKey {
        case createRequest = "create_request"
    }
}

/// `WatchResponse`.
struct EtcdWatchResponse: Decodable {
    struct Event: Decodable {
        /// "PUT" is the zero value, so a put has no type.
        var type: String?
        var kv: EtcdKeyValue
    }

    var header: EtcdHeader?
    var created: Bool?
    var canceled: Bool?
    var compactRevision: EtcdInt64?
    var cancelReason: String?
    var events: [Event]?

    enum CodingKeys: String, CodingKey {
        case header, created, canceled, events
        case compactRevision = "compact_revision"
        case cancelReason = "cancel_reason"
    }
}

/// One message of a streamed answer: `{"result": ...}` or `{"error": ...}`.
struct EtcdStreamMessage<Result: Decodable>: Decodable {
    var result: Result?
    var error: EtcdStreamError?
}

/// The error object of a streamed answer.
struct EtcdStreamError: Decodable {
    var grpcCode: Int?
    var message: String?

    enum CodingKeys: String, CodingKey {
        case message
        case grpcCode = "grpc_code"
    }
}

/// The body of a non-200 answer: `{"error": "...", "message": "...", "code": N}` (N is the gRPC code).
struct EtcdErrorBody: Decodable {
    var message: String?
    var error: String?
    var code: Int?
}
