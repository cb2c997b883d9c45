import SystemPackage
import Testing

@testable import LogStorage

@Suite struct OffsetIndexTests {
    @Test func appendLookupAndTrimOnClose() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending("00000000000000000100.index")
            let index = try OffsetIndex(path: path, baseOffset: 100, maxIndexSize: 1024)
            #expect(TestFiles.size(path) == 1024)  // preallocated
            #expect(index.lookup(150) == (100, 0))
            try index.append(offset: 109, position: 0)
            try index.append(offset: 119, position: 4200)
            try index.append(offset: 129, position: 8400)
            #expect(index.lookup(99) == (100, 0))
            #expect(index.lookup(109) == (109, 0))
            #expect(index.lookup(118) == (109, 0))
            #expect(index.lookup(119) == (119, 4200))
            #expect(index.lookup(1_000) == (129, 8400))
            #expect(throws: StorageError.self) { try index.append(offset: 129, position: 9000) }
            try index.sanityCheck()
            try index.file.close(trim: true)
            #expect(TestFiles.size(path) == 24)
            // Bytes on disk: int32 relative offset, int32 position, big-endian.
            #expect(TestFiles.read(path)!.prefix(8) == [0, 0, 0, 9, 0, 0, 0, 0])

            let reopened = try OffsetIndex(path: path, baseOffset: 100, maxIndexSize: 1024)
            #expect(reopened.entryCount == 3)
            #expect(reopened.lookup(125) == (119, 4200))
            reopened.truncate(fromOffset: 119)
            #expect(reopened.entryCount == 1)
            #expect(reopened.lastOffset == 109)
        }
    }

    @Test func fillsUpAtItsCapacity() throws {
        try TemporaryDirectory.with { directory in
            let index = try OffsetIndex(path: directory.appending("0.index"), baseOffset: 0, maxIndexSize: 20)
            #expect(index.file.maxEntries == 2)
            try index.append(offset: 1, position: 10)
            #expect(!index.isFull)
            try index.append(offset: 2, position: 20)
            #expect(index.isFull)
        }
    }

    /// An untrimmed file (a crash left it at its preallocated size) has entries only up to its last non-zero one:
    /// its zeros are not read as entries.
    @Test func anUntrimmedFileHasItsEntriesNotItsLength() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending("00000000000000000005.index")
            try TestFiles.write(path, [0, 0, 0, 1, 0, 0, 0, 10] + [UInt8](repeating: 0, count: 56))
            let index = try OffsetIndex(path: path, baseOffset: 5, maxIndexSize: 64)
            #expect(index.entryCount == 1)
            #expect(index.lastOffset == 6)
            try index.sanityCheck()
            try TestFiles.write(path, [UInt8](repeating: 0, count: 64))
            #expect(try OffsetIndex(path: path, baseOffset: 5, maxIndexSize: 64).entryCount == 0)
        }
    }

    /// Zeros written out (not a hole, as on a file system without sparse files) past the entries are read back in
    /// steps until the last entry: 200 KiB of them, several read steps.
    @Test func writtenZerosPastTheEntriesAreNotEntries() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending("00000000000000000005.index")
            let entries: [UInt8] = [0, 0, 0, 1, 0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 20]
            try TestFiles.write(path, entries + [UInt8](repeating: 0, count: 200 << 10))
            let index = try OffsetIndex(path: path, baseOffset: 5, maxIndexSize: 0)
            #expect(index.entryCount == 2)
            #expect(index.lastOffset == 7)
            #expect(TestFiles.size(path) == entries.count)
        }
    }

    /// Entries that are not in order (bytes changed underneath) fail the check, so the loader rebuilds the index.
    @Test func sanityCheckRefusesEntriesOutOfOrder() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending("00000000000000000005.index")
            try TestFiles.write(path, [0, 0, 0, 9, 0, 0, 0, 90, 0, 0, 0, 3, 0, 0, 0, 30])
            let index = try OffsetIndex(path: path, baseOffset: 5, maxIndexSize: 0)
            #expect(index.entryCount == 2)
            #expect(throws: StorageError.self) { try index.sanityCheck() }
        }
    }
}

@Suite struct TimeIndexTests {
    @Test func keepsOnlyIncreasingTimestamps() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending("00000000000000000010.timeindex")
            let index = try TimeIndex(path: path, baseOffset: 10, maxIndexSize: 120)
            try index.maybeAppend(timestamp: 1_000, offset: 12)
            try index.maybeAppend(timestamp: 900, offset: 15)  // not above the last: ignored
            try index.maybeAppend(timestamp: 2_000, offset: 20)
            try index.maybeAppend(timestamp: 3_000, offset: 30)
            #expect(index.entryCount == 3)
            #expect(index.lastEntry(before: 1_000) == nil)
            #expect(index.lastEntry(before: 1_001)! == (1_000, 12))
            #expect(index.lastEntry(before: 2_500)! == (2_000, 20))
            #expect(index.lastEntry(before: Int64.max)! == (3_000, 30))
            index.truncate(fromOffset: 20)
            #expect(index.lastEntry! == (1_000, 12))
            try index.file.close(trim: true)
            let bytes = TestFiles.read(path)!
            #expect(bytes.count == 12)
            #expect(bytes == [0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0, 0, 0, 2])
        }
    }
}
