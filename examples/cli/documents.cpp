#include "documents.h"

#include <sstream>

#include <nlohmann/json.hpp>

namespace cli {

bool parse_documents(std::string_view text, const std::string& name, DocFile* out, std::string* error) {
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) {
    *error = name + ": empty file";
    return false;
  }
  if (text[first] == '[') {
    nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_array()) {
      *error = name + ": not a valid JSON array of strings";
      return false;
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string()) {
        *error = name + ": element " + std::to_string(i) + " is not a string";
        return false;
      }
      out->texts.push_back(j[i].get<std::string>());
    }
    return true;
  }
  std::istringstream lines{std::string(text)};
  std::string line;
  size_t lineno = 0;
  while (std::getline(lines, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string() ||
        !j.contains("id") || !j["id"].is_number_unsigned()) {
      *error = name + ":" + std::to_string(lineno) + ": expected {\"id\": <non-negative integer>, \"text\": \"...\"}";
      return false;
    }
    out->ids.push_back(j["id"].get<uint64_t>());
    out->texts.push_back(j["text"].get<std::string>());
  }
  return true;
}

}  // namespace cli
