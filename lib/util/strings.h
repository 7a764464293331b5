// Small string helpers shared by the config reader, the launcher and the CLIs.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ds {

// Levenshtein distance, case-insensitive: "did you mean" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, if it is close enough to be a plausible typo.
std::optional<std::string> closest_match(std::string_view word,
                                         std::span<const std::string> candidates);

// "a, b or c"
std::string join_choices(std::span<const std::string> items, std::string_view last_sep = " or ");

std::string to_lower(std::string_view s);

// A size as Hugging Face's save_pretrained(max_shard_size=...) spells it: "5GB" (10^9),
// "5GiB" (2^30), "200KB", "100MB", "4096" or "4096B" bytes; nullopt for anything else.
std::optional<int64_t> parse_byte_size(std::string_view text);
bool ends_with(std::string_view s, std::string_view suffix);

}  // namespace ds
