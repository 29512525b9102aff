// A small C++17 RAII wrapper over the q8bert C API (example; header-only, not installed).
// A q8bert::Model owns one q8bert_model*: move-only, freed in the destructor. Failures throw
// q8bert::Error carrying the library's status code and message.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "q8bert.h"

namespace q8bert {

class Error : public std::runtime_error {
public:
    Error(q8bert_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    q8bert_status status() const noexcept { return status_; }

private:
    q8bert_status status_;
};

namespace detail {
// q8bert_last_error() is per thread: read it right after the failing call, on the same thread.
inline void check(q8bert_status st) {
    if (st != Q8BERT_STATUS_OK) throw Error(st, q8bert_last_error());
}
struct Free {
    void operator()(q8bert_model *m) const noexcept { q8bert_free(m); }
};
}  // namespace detail

struct Options {
    uint32_t num_threads = 0;  // 0 = one per core
    uint32_t kernel = Q8BERT_KERNEL_AUTO;
    bool truncate = false;
    bool verify_checksum = false;
    uint32_t max_seq_len = 0;
};

class Model {
public:
    explicit Model(const std::string &path, const Options &o = Options()) {
        q8bert_options opts;
        q8bert_options_init(&opts);
        opts.num_threads = o.num_threads;
        opts.kernel = o.kernel;
        opts.max_seq_len = o.max_seq_len;
        opts.flags = (o.truncate ? Q8BERT_FLAG_TRUNCATE : 0u) | (o.verify_checksum ? Q8BERT_FLAG_VERIFY_CHECKSUM : 0u);
        q8bert_model *m = nullptr;
        detail::check(q8bert_create(path.c_str(), &opts, &m));
        handle_.reset(m);
        detail::check(q8bert_model_info(handle_.get(), &info_));
    }

    const q8bert_info &info() const noexcept { return info_; }
    q8bert_model *get() const noexcept { return handle_.get(); }

    std::vector<std::string> labels() const {
        std::vector<std::string> out;
        for (size_t i = 0; i < info_.num_labels; i++) {
            const char *name = q8bert_label_name(handle_.get(), i);
            out.emplace_back(name ? name : "");
        }
        return out;
    }

    // Per text: the logits (classification), the score (regression) or the embedding. `pairs`,
    // when not empty, holds each text's second text (cross-encoders, NLI): one input per pair.
    std::vector<std::vector<float>> run_text(const std::vector<std::string> &texts,
                                             const std::vector<std::string> &pairs = {}) const {
        if (texts.empty()) return {};
        if (!pairs.empty() && pairs.size() != texts.size())
            throw Error(Q8BERT_STATUS_INVALID_ARGUMENT, "pairs and texts differ in size");
        std::vector<const char *> ptrs, pair_ptrs;
        ptrs.reserve(texts.size());
        for (const auto &t : texts) ptrs.push_back(t.c_str());
        for (const auto &t : pairs) pair_ptrs.push_back(t.c_str());
        size_t len = 0;
        detail::check(q8bert_text_output_len(handle_.get(), texts.size(), &len));
        std::vector<float> flat(len);
        detail::check(q8bert_run_text(handle_.get(), ptrs.data(), pairs.empty() ? nullptr : pair_ptrs.data(),
                                      texts.size(), flat.data(), flat.size()));
        return split(flat, texts.size());
    }

    // Token ids in, row-major [batch][seq_len]; an empty mask means all ones.
    std::vector<float> run(const std::vector<int32_t> &ids, size_t batch, const std::vector<int32_t> &mask = {}) const {
        if (batch == 0 || ids.size() % batch != 0) throw Error(Q8BERT_STATUS_INVALID_ARGUMENT, "ids.size() is not a multiple of batch");
        if (!mask.empty() && mask.size() != ids.size()) throw Error(Q8BERT_STATUS_INVALID_ARGUMENT, "mask and ids differ in size");
        size_t seq_len = ids.size() / batch, len = 0;
        detail::check(q8bert_output_len(handle_.get(), batch, seq_len, &len));
        std::vector<float> out(len);
        detail::check(q8bert_run(handle_.get(), ids.data(), nullptr, mask.empty() ? nullptr : mask.data(), batch, seq_len,
                                 out.data(), out.size()));
        return out;
    }

    std::vector<int32_t> tokenize(const std::string &text) const {
        std::vector<int32_t> ids(info_.max_text_tokens);
        size_t len = 0;
        detail::check(q8bert_tokenize(handle_.get(), text.c_str(), nullptr, ids.data(), nullptr, ids.size(), &len));
        ids.resize(len);
        return ids;
    }

private:
    static std::vector<std::vector<float>> split(const std::vector<float> &flat, size_t n) {
        std::vector<std::vector<float>> out;
        size_t per = flat.size() / n;
        for (size_t i = 0; i < n; i++) out.emplace_back(flat.begin() + i * per, flat.begin() + (i + 1) * per);
        return out;
    }

    std::unique_ptr<q8bert_model, detail::Free> handle_;
    q8bert_info info_{};
};

}  // namespace q8bert
