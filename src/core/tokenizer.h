/*
 * tokenizer.h - byte-level BPE tokenizer of the student model.
 *
 * GPT-2-style byte-level byte-pair encoding: a vocabulary whose tokens are
 * byte strings, and an ordered list of merges (left id, right id) -> result
 * id.  Any byte string encodes (binary, NUL bytes and invalid UTF-8 too) and
 * decode(encode(x)) == x byte for byte; there is no unknown token.
 *
 * Pre-tokenization.  Text is first cut into chunks and merges never cross a
 * chunk boundary.  Bytes are letters (A-Z, a-z and every byte >= 0x80, so
 * UTF-8 words stay whole), digits (0-9), whitespace (space, \t \n \v \f \r)
 * or other (punctuation, control bytes, NUL).  A chunk is one of:
 *
 *   - a contraction: ' followed by s, t, m, d, re, ve or ll (any case) and
 *     then not by a letter, as in "don" "'t";
 *   - an optional space and a run of letters: " hello";
 *   - a single digit: numbers are always spelled digit by digit, with no
 *     space attached (" 84" is " " "8" "4"), so every number has the one
 *     spelling the student needs for arithmetic (SVAMP), as in Llama 3 and
 *     Qwen2.5;
 *   - an optional space and a run of other bytes: " (", ".\"";
 *   - a run of whitespace; when it is longer than one byte, ends in a space
 *     and is followed by a letter or other byte, that last space is left to
 *     the next chunk ("  x" is " " " x"), as GPT-2's \s+(?!\S) does.
 *
 * No chunk is longer than TOK_MAX_CHUNK_BYTES, the longest token: a longer
 * run is cut into pieces of that length from its start (only its last
 * piece may leave a space to the next chunk).  So every chunk gives at
 * least one token per TOK_MAX_CHUNK_BYTES bytes, and the first n tokens of
 * a text depend on its first n * TOK_MAX_CHUNK_BYTES + 1 bytes only:
 * prediction, which reads max_input_tokens tokens, never needs to encode
 * more of an input than that, however long it is (tok_encode_prefix()).
 *
 * Vocabulary of a trained tokenizer: ids 0..255 are the single bytes (id =
 * byte value), 256 <pad>, 257 <bos>, 258 <eos>, 259 <sep>, then one token
 * per merge in merge order from 260.  Callers should still ask tok_pad()
 * and friends rather than hard-code ids: the serialized form describes the
 * id of every byte and special token explicitly, so that a pretrained
 * vocabulary with another layout can be represented later.  Special tokens
 * never arise from encoding text ("<eos>" in the text is five byte-level
 * tokens) and decode to nothing.
 *
 * Pretrained checkpoints' tokenizers (SentencePiece-style and byte-level
 * BPE from llama2.c, GGUF or tokenizer.json files) are Tokenizers too,
 * built by tok_from_source() (tokenizer_pretrained.h), and every function
 * here works on them, with these differences:
 *
 *   - text must be valid UTF-8: tok_encode() returns -1 otherwise
 *     (tok_encode_checked() says where);
 *   - added and special tokens written in the text are matched ("<s>",
 *     "<|im_end|>" become their ids), as Hugging Face encodes;
 *   - tok_decode() gives the text as the checkpoint's decoder does
 *     (SentencePiece: U+2581 as a space, byte tokens <0xNN> as bytes;
 *     byte level: GPT-2's byte map), always valid UTF-8: an invalid
 *     sequence (a character cut by generation) becomes U+FFFD.  Special
 *     tokens decode to nothing.  The SentencePiece dummy prefix is kept: a
 *     text encoded and decoded comes back with a space before it, which
 *     Hugging Face's and SentencePiece's decoders strip; the caller strips
 *     it after BOS where it wants that;
 *   - tok_pad() and tok_sep() are -1 (checkpoints have no such tokens for
 *     distill's use); tok_bos() and tok_eos() are the checkpoint's ids, -1
 *     when it has none;
 *   - tok_encode_prefix() encodes the whole text and keeps the first
 *     max_ids ids (ignoring an incomplete UTF-8 character at the very end,
 *     where the caller may have cut the text); tok_prefix_bytes() is a
 *     bound for the tokenizers trained here only (SentencePiece has no
 *     pre-tokenization to bound how far a merge looks);
 *   - tok_token() gives a token's decoded bytes (a byte token: its byte;
 *     a special token: its name; an id without a token: no bytes);
 *   - a token may be longer than TOK_MAX_TOKEN_BYTES and the vocabulary
 *     smaller than TOK_MIN_VOCAB;
 *   - tok_serialize() writes another layout (magic "DSTP",
 *     tokenizer_pretrained_io.c), which tok_deserialize() reads as well.
 *
 * Plain C, malloc/free, no PostgreSQL headers.  Errors are reported by
 * return value and, where there is an err argument, a kind and a message
 * in err (error.h); the code never aborts.  A Tokenizer is immutable after tok_train() or
 * tok_deserialize() returns, so concurrent encode/decode calls are safe.
 */
#ifndef DISTILL_CORE_TOKENIZER_H
#define DISTILL_CORE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/stop.h"

typedef struct Tokenizer Tokenizer;

/* Smallest vocabulary: 256 bytes and 4 special tokens, no merges. */
#define TOK_MIN_VOCAB 260
/* Largest vocabulary accepted by training and deserialization. */
#define TOK_MAX_VOCAB (1 << 20)
/* Longest token, in bytes; training never merges past it. */
#define TOK_MAX_TOKEN_BYTES 256
/* Longest chunk of the pre-tokenizer, in bytes. */
#define TOK_MAX_CHUNK_BYTES TOK_MAX_TOKEN_BYTES

/*
 * Train on n_texts texts (texts[i] has lens[i] bytes, any content).  Pairs
 * of adjacent tokens inside a chunk are merged most frequent first (ties go
 * to the smaller left id, then the smaller right id) until the vocabulary
 * holds vocab_size tokens or no pair occurs twice; so the result may be
 * smaller than asked: use tok_vocab_size().  The result depends only on
 * the multiset of chunks, not on the order of the texts.  The texts are not
 * referenced after return.
 *
 * The working memory of training (the distinct chunks, their symbols, the
 * pairs and where they occur; about 40 bytes per byte of distinct chunks)
 * stays within max_bytes (SIZE_MAX = no limit; the tokenizer it builds is
 * not counted): past it, training stops with a message that gives the
 * figure.  stop (may be NULL) is asked between bounded units of work.
 *
 * NULL and err when vocab_size is outside [TOK_MIN_VOCAB, TOK_MAX_VOCAB]
 * or the corpus holds 2 GB of distinct chunks (CORE_ERR_INVALID_INPUT),
 * the work needs more than max_bytes (CORE_ERR_LIMIT), stop asked to stop
 * (CORE_ERR_INTERRUPTED) or memory runs out (CORE_ERR_NO_MEMORY).
 */
extern Tokenizer *tok_train(const char *const *texts, const size_t *lens,
							size_t n_texts, int vocab_size, size_t max_bytes,
							const StopCheck *stop, CoreError *err);

/*
 * Encode len bytes of text into *ids_out, a malloc'd array (at least one
 * element, so free() it even when the count is 0).  Returns the number of
 * ids, or -1 (and *ids_out NULL) when memory runs out or len > INT_MAX
 * (or, for a pretrained tokenizer, the text is not valid UTF-8).
 */
extern int	tok_encode(const Tokenizer *t, const char *text, size_t len,
					   int32_t **ids_out);

/*
 * The first max_ids ids of tok_encode(text, len) (all of them when there
 * are fewer), in a malloc'd *ids_out as above; -1 when memory runs out.
 * It reads no byte at or past tok_prefix_bytes(max_ids), so its work and
 * memory do not depend on len: a text may be cut there (or be longer than
 * INT_MAX) and give the same ids.
 */
extern int	tok_encode_prefix(const Tokenizer *t, const char *text, size_t len,
							  int max_ids, int32_t **ids_out);

/* The bytes of a text that its first max_ids (>= 0) ids depend on. */
extern size_t tok_prefix_bytes(int max_ids);

/*
 * Decode n ids into a malloc'd buffer of *len_out bytes followed by a NUL
 * (not counted), so text can be used as a C string when it has no NUL.
 * Special tokens and ids outside [0, tok_vocab_size()) produce no bytes.
 * NULL when memory runs out.
 */
extern char *tok_decode(const Tokenizer *t, const int32_t *ids, size_t n,
						size_t *len_out);

/* Number of tokens; valid ids are 0 .. tok_vocab_size() - 1. */
extern int	tok_vocab_size(const Tokenizer *t);

/* Ids of the special tokens (pretrained: pad and sep are -1, above). */
extern int32_t tok_pad(const Tokenizer *t);
extern int32_t tok_bos(const Tokenizer *t);
extern int32_t tok_eos(const Tokenizer *t);
extern int32_t tok_sep(const Tokenizer *t);		/* between prompt and target */

/*
 * The bytes of token id (for a special token, its name such as "<eos>"),
 * not NUL-terminated, valid as long as t; *len_out gets their number.
 * NULL when id is out of range.
 */
extern const char *tok_token(const Tokenizer *t, int32_t id, size_t *len_out);

/*
 * Serialize into a self-contained, malloc'd little-endian blob of *len_out
 * bytes (layout in tokenizer_io.c), ending in a CRC-32C of all bytes before
 * it.  NULL when memory runs out.
 */
extern void *tok_serialize(const Tokenizer *t, size_t *len_out);

/*
 * Rebuild a tokenizer from tok_serialize() output.  Any input is safe: a
 * truncated, corrupt or foreign blob gives NULL and CORE_ERR_CORRUPT (bad
 * magic, unsupported version, truncated, checksum mismatch, inconsistent
 * tables, out of memory); nothing is read outside data[0 .. len).
 */
extern Tokenizer *tok_deserialize(const void *data, size_t len,
								  CoreError *err);

/* Bytes of memory t holds. */
extern size_t tok_memory_bytes(const Tokenizer *t);

/* Free t and everything it owns; NULL is fine. */
extern void tok_free(Tokenizer *t);

#endif
