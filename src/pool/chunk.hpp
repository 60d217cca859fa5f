#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "mproc/detail/frame.hpp"
#include "mproc/detail/jobs.hpp"

namespace mproc::detail {

// A task frame on its way to a worker and back: which job its tasks belong to, and where in
// that job they start.
struct Chunk {
    std::shared_ptr<Job> job;
    std::size_t first_task = 0;
    std::shared_ptr<Frame> frame;
    std::uint64_t sequence = 0;  // set when it is sent; a resent chunk gets a new one
    int losses = 0;              // workers lost while it was in flight with no task running
    // Times its tasks ran, each in a worker that died while running it (PoolOptions::retries):
    // only a chunk of one task, sent again after such a death, has any.
    int runs = 0;
    // Tasks that are each a unit of their own (apply_async calls, a map's tasks of chunksize
    // 1), travelling together only to save frames: the collector cuts the chunk into pieces
    // as it sends it (PoolCore::Impl::take_piece).
    bool batch = false;
    // A batch of apply_async calls (PoolCore::add_to_batch), whose job is an ApplyBatchJob:
    // more calls of its function may join it while it waits to be taken by the collector.
    bool gathering = false;
    // A batch's tasks already cut off and sent: the frame's first `taken` tasks are no longer
    // the chunk's (first_task has moved past them). Only a batch is ever cut this way, and
    // the collector never sends such a frame whole.
    std::uint32_t taken = 0;
    // A batch of a map's tasks, which the workers may take from the pool's claim board
    // themselves (PoolCore::Impl, Claim) rather than be sent in pieces: nobody waits for any of
    // its results before the last.
    bool claimable = false;
    // Sent to a worker to take tasks from the claim board: its results are those the worker
    // took, whichever they are.
    bool claimed = false;

    std::uint32_t tasks() const noexcept { return frame->header().item_count - taken; }
    // Fails every task of the chunk with error.
    void fail(std::exception_ptr error) const;
};

// A chunk of tasks [begin, end) of chunk: the same entry and function, those tasks' argument
// bytes, and all of the chunk's descriptors (tasks name descriptors by their index in it).
Chunk slice(const Chunk& chunk, std::uint32_t begin, std::uint32_t end);

// The frame that opens batch's remaining tasks to a worker for claims on the board's
// `generation` (claimed_from_board): their records, behind that generation.
Chunk claim_chunk(const Chunk& batch, std::uint64_t generation);

// Flags the chunk's frame piece_of_batch: the worker may end it early.
void mark_piece(Chunk& chunk);

// Stamps the sequence number into the chunk's frame header.
void stamp_sequence(Chunk& chunk, std::uint64_t sequence);

}  // namespace mproc::detail
