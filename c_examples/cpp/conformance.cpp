// The binding conformance suite through the C++ wrapper:
//   conformance_cpp DIR   (DIR from `cargo run --example make_conformance_model -- DIR`)
// Outputs must equal the Rust API's bit for bit; the corrupt file must throw the library's status
// and message. Prints one line per check and "N passed, N failed".
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "q8bert.hpp"

static int passed, failed;

static void check(bool ok, const std::string &name) {
    (ok ? passed : failed)++;
    std::cout << (ok ? "ok   " : "FAIL ") << name << "\n";
}

static std::vector<std::string> fields(const std::string &line) {
    std::vector<std::string> out;
    std::stringstream ss(line);
    std::string f;
    while (std::getline(ss, f, '\t')) out.push_back(f);
    if (!line.empty() && line.back() == '\t') out.push_back("");
    return out;
}

static std::vector<uint32_t> hexes(const std::string &s) {
    std::vector<uint32_t> out;
    std::stringstream ss(s);
    std::string w;
    while (ss >> w) out.push_back(static_cast<uint32_t>(std::stoul(w, nullptr, 16)));
    return out;
}

static std::vector<int32_t> ints(const std::string &s) {
    std::vector<int32_t> out;
    std::stringstream ss(s);
    int32_t v;
    while (ss >> v) out.push_back(v);
    return out;
}

static std::vector<uint32_t> bits(const std::vector<float> &v) {
    std::vector<uint32_t> out(v.size());
    std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
    return out;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " CONFORMANCE_DIR\n";
        return 2;
    }
    std::string dir = argv[1];
    std::ifstream in(dir + "/expected.tsv");
    std::map<std::string, std::vector<std::string>> kv;   // single-valued keys
    std::vector<std::string> texts, labels;
    std::vector<std::vector<int32_t>> tokens;
    std::vector<std::vector<uint32_t>> classify, embed, bpe_scores, unigram_scores;
    std::vector<std::string> bpe_a, bpe_b, unigram_a, unigram_b;
    for (std::string line; std::getline(in, line);) {
        auto f = fields(line);
        if (f.empty()) continue;
        if (f[0] == "labels") labels.assign(f.begin() + 1, f.end());
        else if (f[0] == "text") texts.push_back(f.size() > 2 ? f[2] : "");
        else if (f[0] == "tokens") tokens.push_back(ints(f[2]));
        else if (f[0] == "classify") classify.push_back(hexes(f[2]));
        else if (f[0] == "embed") embed.push_back(hexes(f[2]));
        else if (f[0] == "bpe_pair") bpe_a.push_back(f[2]), bpe_b.push_back(f.size() > 3 ? f[3] : "");
        else if (f[0] == "bpe_score") bpe_scores.push_back(hexes(f[2]));
        else if (f[0] == "unigram_pair") unigram_a.push_back(f[2]), unigram_b.push_back(f.size() > 3 ? f[3] : "");
        else if (f[0] == "unigram_score") unigram_scores.push_back(hexes(f[2]));
        else kv[f[0]] = f;
    }
    check(!texts.empty() && texts.size() == classify.size(), "expected.tsv read");

    try {
        check(std::string(q8bert_version()) == kv["version"][1], "library version matches the suite");
        q8bert::Model cls(dir + "/classify.q8b");
        q8bert::Model emb(dir + "/embed.q8b");
        check(cls.labels() == labels, "labels");
        auto acts = ints(kv["activations"][1]);   // classify, embed: Q8BERT_ACTIVATIONS_*
        check(acts.size() == 2 && cls.info().activations == static_cast<uint32_t>(acts[0]) &&
                  emb.info().activations == static_cast<uint32_t>(acts[1]),
              "info.activations (static classifier, per-token embedder)");
        for (size_t i = 0; i < texts.size(); i++)
            check(cls.tokenize(texts[i]) == tokens[i], "tokenize text " + std::to_string(i));
        auto logits = cls.run_text(texts);
        auto vecs = emb.run_text(texts);
        for (size_t i = 0; i < texts.size(); i++) {
            check(bits(logits[i]) == classify[i], "classify text " + std::to_string(i) + " bit-exact");
            check(bits(vecs[i]) == embed[i], "embed text " + std::to_string(i) + " bit-exact");
        }
        auto shape = ints(kv["run_shape"][1]);
        auto out = cls.run(ints(kv["run_ids"][1]), static_cast<size_t>(shape[0]), ints(kv["run_mask"][1]));
        check(bits(out) == hexes(kv["run_output"][1]), "run ids with mask bit-exact");
        // A RoBERTa-style cross-encoder: byte-level BPE, text pairs, one score each.
        q8bert::Model bpe(dir + "/" + kv["bpe_model"][1]);
        auto scores = bpe.run_text(bpe_a, bpe_b);
        check(!bpe_a.empty() && scores.size() == bpe_a.size(), "byte-level BPE: one score per pair");
        for (size_t i = 0; i < scores.size(); i++)
            check(bits(scores[i]) == bpe_scores[i], "byte-level BPE pair " + std::to_string(i) + " score bit-exact");
        // An XLM-R-style cross-encoder: SentencePiece Unigram with its charsmap.
        q8bert::Model unigram(dir + "/" + kv["unigram_model"][1]);
        auto uscores = unigram.run_text(unigram_a, unigram_b);
        check(!unigram_a.empty() && uscores.size() == unigram_a.size(), "Unigram: one score per pair");
        for (size_t i = 0; i < uscores.size(); i++)
            check(bits(uscores[i]) == unigram_scores[i], "Unigram pair " + std::to_string(i) + " score bit-exact");
    } catch (const q8bert::Error &e) {
        check(false, std::string("unexpected error: ") + e.what());
    }

    try {
        q8bert::Model bad(dir + "/corrupt.q8b");
        check(false, "corrupt file rejected");
    } catch (const q8bert::Error &e) {
        check(static_cast<uint32_t>(e.status()) == static_cast<uint32_t>(std::stoul(kv["corrupt_status"][1])), "corrupt file: status");
        check(std::string(e.what()).find(kv["corrupt_message"][1]) != std::string::npos, "corrupt file: library message");
    }

    // Moving transfers ownership; the moved-from model frees nothing.
    q8bert::Model a(dir + "/classify.q8b");
    q8bert::Model b(std::move(a));
    check(a.get() == nullptr && b.get() != nullptr, "move transfers the handle");
    for (int i = 0; i < 200; i++) q8bert::Model m(dir + "/classify.q8b");
    check(true, "200 open/close cycles");

    std::cout << passed << " passed, " << failed << " failed\n";
    return failed == 0 ? 0 : 1;
}
