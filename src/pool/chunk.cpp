#include "pool/chunk.hpp"

#include <cstdint>
#include <limits>
#include <span>

namespace mproc::detail {

void Chunk::fail(std::exception_ptr error) const {
    for (std::uint32_t task = 0; task < tasks(); ++task) job->fail(first_task + task, error);
}

namespace {

// A part of a chunk is no larger than the chunk, which PoolCore::submit checked against the
// pool's limit: no other limit applies (the process's default may be lower than the pool's).
constexpr std::uint64_t checked_by_submit = std::numeric_limits<std::uint64_t>::max();

// A task_block frame of a block chunk's tasks [begin, end) (the pool made the block: it holds
// one record per task), its records behind `prefix`, its header with `flags`.
Frame block_of(const Chunk& chunk, std::uint32_t begin, std::uint32_t end,
               std::span<const std::byte> prefix = {}, std::uint16_t flags = 0) {
    const FrameHeader header = chunk.frame->header();
    const auto payload = chunk.frame->payload();
    const std::size_t record = payload.size() / header.item_count;
    FrameWriter writer(FrameKind::task_block, 0, header.entry, header.function, checked_by_submit);
    writer.buffer().append(prefix.data(), prefix.size());
    writer.buffer().append(payload.data() + (chunk.taken + begin) * record, (end - begin) * record);
    return finish_block(writer, FrameKind::task_block, end - begin, flags);
}

}  // namespace

Chunk slice(const Chunk& chunk, std::uint32_t begin, std::uint32_t end) {
    const FrameHeader header = chunk.frame->header();
    Chunk part;
    part.job = chunk.job;
    part.first_task = chunk.first_task + begin;
    if (chunk.frame->kind() == FrameKind::task_block) {
        part.frame = std::make_shared<Frame>(block_of(chunk, begin, end));
        return part;
    }
    FrameWriter writer(FrameKind::task, 0, header.entry, header.function, checked_by_submit);
    ItemReader items(chunk.frame->payload());
    for (std::uint32_t task = 0; task < chunk.taken + end; ++task) {
        const auto item = items.next();
        if (task < chunk.taken + begin) continue;
        writer.begin_item();
        writer.buffer().append(item.data(), item.size());
        writer.end_item();
    }
    std::vector<UniqueFd> fds;
    for (const auto& fd : chunk.frame->fds) fds.push_back(fd.duplicate());
    writer.add_fds(std::move(fds));
    part.frame = std::make_shared<Frame>(writer.finish());
    return part;
}

Chunk claim_chunk(const Chunk& batch, std::uint64_t generation) {
    Chunk claim;
    claim.job = batch.job;
    claim.first_task = batch.first_task;
    claim.claimed = true;
    claim.frame = std::make_shared<Frame>(block_of(
        batch, 0, batch.tasks(), std::as_bytes(std::span(&generation, 1)), claimed_from_board));
    return claim;
}

void mark_piece(Chunk& chunk) {
    FrameHeader header = chunk.frame->header();
    header.flags |= piece_of_batch;
    std::memcpy(chunk.frame->bytes.data(), &header, sizeof header);
}

void stamp_sequence(Chunk& chunk, std::uint64_t sequence) {
    chunk.sequence = sequence;
    FrameHeader header = chunk.frame->header();
    header.sequence = sequence;
    std::memcpy(chunk.frame->bytes.data(), &header, sizeof header);
}

}  // namespace mproc::detail
