// Shared by the on-disk bank tests (test_bank_file.cpp, test_bank_lock.cpp): the document texts their banks are
// built from, and the model fingerprint a bank is opened with (cached per model).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "memory/bank_fingerprint.h"
#include "model/model.h"

namespace bank_test {

inline const std::vector<std::string> kTexts = {
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Mount Everest is the highest mountain above sea level, 8849 metres.",
    "The Great Wall of China is thousands of kilometres long.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Honey never spoils; archaeologists found edible honey in tombs.",
};

// model_fingerprint hashes tokenizer.json (11 MB): once per model (the test models are cached for the whole
// process, so their addresses are stable keys).
inline const msa::bankfmt::Fingerprint& fingerprint_of(const msa::Model& model) {
  static std::map<const msa::Model*, msa::bankfmt::Fingerprint> cache;
  auto it = cache.find(&model);
  if (it == cache.end()) it = cache.emplace(&model, msa::model_fingerprint(model)).first;
  return it->second;
}

}  // namespace bank_test
