// One function per `msa` subcommand; each lives in its own cmd_*.cpp file. argv[0] is the subcommand name.
#pragma once

int cmd_info(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_init_model(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_detokenize(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_route(int argc, char** argv);
int cmd_encode(int argc, char** argv);
int cmd_memory(int argc, char** argv);
