#include "os/build_id.hpp"

#include <elf.h>
#include <link.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

namespace mproc::detail {

namespace {

// The NT_GNU_BUILD_ID note of the program itself (the first module dl_iterate_phdr reports).
std::string read_build_id_note() {
    std::string id;
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* out) {
            auto& id = *static_cast<std::string*>(out);
            for (int i = 0; i < info->dlpi_phnum; ++i) {
                const auto& header = info->dlpi_phdr[i];
                if (header.p_type != PT_NOTE) continue;
                const auto* at =
                    reinterpret_cast<const unsigned char*>(info->dlpi_addr + header.p_vaddr);
                const auto* end = at + header.p_memsz;
                while (at + sizeof(ElfW(Nhdr)) <= end) {
                    ElfW(Nhdr) note;
                    std::memcpy(&note, at, sizeof note);
                    const auto* name = at + sizeof note;
                    const auto* desc = name + ((note.n_namesz + 3) & ~3u);
                    if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
                        std::memcmp(name, "GNU", 4) == 0 && desc + note.n_descsz <= end) {
                        for (std::size_t b = 0; b < note.n_descsz; ++b) {
                            char hex[3];
                            std::snprintf(hex, sizeof hex, "%02x", desc[b]);
                            id += hex;
                        }
                        return 1;
                    }
                    at = desc + ((note.n_descsz + 3) & ~3u);
                }
            }
            return 1;  // only the program itself
        },
        &id);
    return id;
}

std::string read_file_identity() {
    struct stat status {};
    if (::stat("/proc/self/exe", &status) != 0) return "unknown";
    return "file:" + std::to_string(status.st_dev) + ":" + std::to_string(status.st_ino) + ":" +
           std::to_string(status.st_size) + ":" + std::to_string(status.st_mtim.tv_sec) + "." +
           std::to_string(status.st_mtim.tv_nsec);
}

}  // namespace

const std::string& program_build_id() {
    static const std::string id = [] {
        std::string note = read_build_id_note();
        return note.empty() ? read_file_identity() : "gnu:" + note;
    }();
    return id;
}

}  // namespace mproc::detail
