// classify_cpp MODEL.q8b "a sentence" [...]: the C++ wrapper in use.
#include <cstdio>
#include <iostream>

#include "q8bert.hpp"

int main(int argc, char **argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " MODEL.q8b TEXT [TEXT ...]\n";
        return 2;
    }
    try {
        q8bert::Model model(argv[1]);
        std::vector<std::string> texts(argv + 2, argv + argc);
        auto labels = model.labels();
        auto logits = model.run_text(texts);
        for (size_t i = 0; i < texts.size(); i++) {
            size_t best = 0;
            for (size_t j = 1; j < logits[i].size(); j++)
                if (logits[i][j] > logits[i][best]) best = j;
            std::cout << texts[i] << "\n  label: " << (best < labels.size() ? labels[best] : "?") << "\n";
        }
    } catch (const q8bert::Error &e) {
        std::cerr << "q8bert error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
