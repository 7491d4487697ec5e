package dev.parley.local.es;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.charfilter.HTMLStripCharFilter;
import org.apache.lucene.analysis.charfilter.MappingCharFilter;
import org.apache.lucene.analysis.charfilter.NormalizeCharMap;
import org.apache.lucene.analysis.classic.ClassicFilter;
import org.apache.lucene.analysis.classic.ClassicTokenizer;
import org.apache.lucene.analysis.core.DecimalDigitFilter;
import org.apache.lucene.analysis.core.FlattenGraphFilter;
import org.apache.lucene.analysis.core.KeywordTokenizer;
import org.apache.lucene.analysis.core.LetterTokenizer;
import org.apache.lucene.analysis.core.UpperCaseFilter;
import org.apache.lucene.analysis.core.WhitespaceTokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.apache.lucene.analysis.en.EnglishMinimalStemFilter;
import org.apache.lucene.analysis.en.EnglishPossessiveFilter;
import org.apache.lucene.analysis.en.KStemFilter;
import org.apache.lucene.analysis.en.PorterStemFilter;
import org.apache.lucene.analysis.miscellaneous.ASCIIFoldingFilter;
import org.apache.lucene.analysis.miscellaneous.LengthFilter;
import org.apache.lucene.analysis.miscellaneous.TrimFilter;
import org.apache.lucene.analysis.miscellaneous.TruncateTokenFilter;
import org.apache.lucene.analysis.miscellaneous.WordDelimiterGraphFilter;
import org.apache.lucene.analysis.ngram.EdgeNGramTokenFilter;
import org.apache.lucene.analysis.ngram.EdgeNGramTokenizer;
import org.apache.lucene.analysis.ngram.NGramTokenFilter;
import org.apache.lucene.analysis.ngram.NGramTokenizer;
import org.apache.lucene.analysis.pattern.PatternReplaceCharFilter;
import org.apache.lucene.analysis.pattern.PatternTokenizer;
import org.apache.lucene.analysis.reverse.ReverseStringFilter;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.AbstractCharFilterFactory;
import org.elasticsearch.index.analysis.AbstractIndexAnalyzerProvider;
import org.elasticsearch.index.analysis.AbstractTokenFilterFactory;
import org.elasticsearch.index.analysis.AbstractTokenizerFactory;
import org.elasticsearch.index.analysis.Analysis;
import org.elasticsearch.index.analysis.AnalyzerProvider;
import org.elasticsearch.index.analysis.CharFilterFactory;
import org.elasticsearch.index.analysis.NormalizingCharFilterFactory;
import org.elasticsearch.index.analysis.NormalizingTokenFilterFactory;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

import java.io.Reader;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;
import java.util.function.IntPredicate;
import java.util.regex.Pattern;

/**
 * A SUBSET of the Elasticsearch "analysis-common" module, re-created on the Lucene classes that
 * the module itself wraps (lucene-analysis-common is already a dependency of the server jar).
 * The real module is not published on Maven Central, so without this the node only has the
 * server's built-ins (standard tokenizer; lowercase/stop/shingle filters; standard, simple,
 * whitespace, stop, keyword analyzers). Names and main parameters follow the Elasticsearch docs;
 * anything not listed here is simply unknown to the local node (index creation fails loudly).
 */
public class CommonAnalysisSubsetPlugin extends Plugin implements AnalysisPlugin {

    // ---------------------------------------------------------------- token filters
    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        Map<String, AnalysisProvider<TokenFilterFactory>> m = new TreeMap<>();
        m.put("asciifolding", (is, env, name, s) -> {
            boolean keep = s.getAsBoolean("preserve_original", false);
            return normalizing(name, ts -> new ASCIIFoldingFilter(ts, keep));
        });
        m.put("uppercase", (is, env, name, s) -> normalizing(name, UpperCaseFilter::new));
        m.put("decimal_digit", (is, env, name, s) -> normalizing(name, DecimalDigitFilter::new));
        m.put("trim", (is, env, name, s) -> normalizing(name, TrimFilter::new));
        m.put("edge_ngram", (is, env, name, s) -> {
            int min = s.getAsInt("min_gram", 1), max = s.getAsInt("max_gram", 2);
            boolean keep = s.getAsBoolean("preserve_original", false);
            return filter(name, ts -> new EdgeNGramTokenFilter(ts, min, max, keep));
        });
        m.put("ngram", (is, env, name, s) -> {
            int min = s.getAsInt("min_gram", 1), max = s.getAsInt("max_gram", 2);
            checkNgramDiff(is, min, max);
            boolean keep = s.getAsBoolean("preserve_original", false);
            return filter(name, ts -> new NGramTokenFilter(ts, min, max, keep));
        });
        m.put("porter_stem", (is, env, name, s) -> filter(name, PorterStemFilter::new));
        m.put("kstem", (is, env, name, s) -> filter(name, KStemFilter::new));
        m.put("stemmer", (is, env, name, s) -> {
            String lang = s.get("language", s.get("name", "porter")).toLowerCase(Locale.ROOT);
            Function<TokenStream, TokenStream> f = switch (lang) {
                case "english", "porter" -> PorterStemFilter::new;
                case "light_english", "kstem" -> KStemFilter::new;
                case "minimal_english" -> EnglishMinimalStemFilter::new;
                case "possessive_english" -> EnglishPossessiveFilter::new;
                default -> throw new IllegalArgumentException(
                    "stemmer language [" + lang + "] is not available on the local Parley node "
                        + "(english, porter, light_english, kstem, minimal_english, possessive_english)");
            };
            return filter(name, f);
        });
        m.put("truncate", (is, env, name, s) -> {
            int len = s.getAsInt("length", 10);
            return filter(name, ts -> new TruncateTokenFilter(ts, len));
        });
        m.put("length", (is, env, name, s) -> {
            int min = s.getAsInt("min", 0), max = s.getAsInt("max", Integer.MAX_VALUE);
            return filter(name, ts -> new LengthFilter(ts, min, max));
        });
        m.put("reverse", (is, env, name, s) -> filter(name, ReverseStringFilter::new));
        m.put("classic", (is, env, name, s) -> filter(name, ClassicFilter::new));
        m.put("flatten_graph", (is, env, name, s) -> filter(name, FlattenGraphFilter::new));
        m.put("word_delimiter_graph", (is, env, name, s) -> {
            int flags = 0;
            flags |= flag(s, "generate_word_parts", true, WordDelimiterGraphFilter.GENERATE_WORD_PARTS);
            flags |= flag(s, "generate_number_parts", true, WordDelimiterGraphFilter.GENERATE_NUMBER_PARTS);
            flags |= flag(s, "catenate_words", false, WordDelimiterGraphFilter.CATENATE_WORDS);
            flags |= flag(s, "catenate_numbers", false, WordDelimiterGraphFilter.CATENATE_NUMBERS);
            flags |= flag(s, "catenate_all", false, WordDelimiterGraphFilter.CATENATE_ALL);
            flags |= flag(s, "split_on_case_change", true, WordDelimiterGraphFilter.SPLIT_ON_CASE_CHANGE);
            flags |= flag(s, "preserve_original", false, WordDelimiterGraphFilter.PRESERVE_ORIGINAL);
            flags |= flag(s, "split_on_numerics", true, WordDelimiterGraphFilter.SPLIT_ON_NUMERICS);
            flags |= flag(s, "stem_english_possessive", true, WordDelimiterGraphFilter.STEM_ENGLISH_POSSESSIVE);
            int fl = flags;
            return filter(name, ts -> new WordDelimiterGraphFilter(ts, fl, null));
        });
        return m;
    }

    // ---------------------------------------------------------------- tokenizers
    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        Map<String, AnalysisProvider<TokenizerFactory>> m = new TreeMap<>();
        m.put("whitespace", (is, env, name, s) -> {
            int max = s.getAsInt("max_token_length", 255);
            return tokenizer(is, s, name, () -> new WhitespaceTokenizer(WhitespaceTokenizer.DEFAULT_TOKEN_ATTRIBUTE_FACTORY, max));
        });
        m.put("keyword", (is, env, name, s) -> {
            int buf = s.getAsInt("buffer_size", 256);
            return tokenizer(is, s, name, () -> new KeywordTokenizer(buf));
        });
        m.put("letter", (is, env, name, s) -> tokenizer(is, s, name, LetterTokenizer::new));
        m.put("classic", (is, env, name, s) -> {
            int max = s.getAsInt("max_token_length", 255);
            return tokenizer(is, s, name, () -> {
                ClassicTokenizer t = new ClassicTokenizer();
                t.setMaxTokenLength(max);
                return t;
            });
        });
        m.put("uax_url_email", (is, env, name, s) -> {
            int max = s.getAsInt("max_token_length", 255);
            return tokenizer(is, s, name, () -> {
                UAX29URLEmailTokenizer t = new UAX29URLEmailTokenizer();
                t.setMaxTokenLength(max);
                return t;
            });
        });
        m.put("pattern", (is, env, name, s) -> {
            Pattern p = Pattern.compile(s.get("pattern", "\\W+"));
            int group = s.getAsInt("group", -1);
            return tokenizer(is, s, name, () -> new PatternTokenizer(p, group));
        });
        m.put("edge_ngram", (is, env, name, s) -> {
            int min = s.getAsInt("min_gram", 1), max = s.getAsInt("max_gram", 2);
            IntPredicate chars = tokenChars(s.getAsList("token_chars"));
            return tokenizer(is, s, name, () -> chars == null ? new EdgeNGramTokenizer(min, max)
                : new EdgeNGramTokenizer(min, max) {
                    @Override
                    protected boolean isTokenChar(int chr) {
                        return chars.test(chr);
                    }
                });
        });
        m.put("ngram", (is, env, name, s) -> {
            int min = s.getAsInt("min_gram", 1), max = s.getAsInt("max_gram", 2);
            checkNgramDiff(is, min, max);
            IntPredicate chars = tokenChars(s.getAsList("token_chars"));
            return tokenizer(is, s, name, () -> chars == null ? new NGramTokenizer(min, max)
                : new NGramTokenizer(min, max) {
                    @Override
                    protected boolean isTokenChar(int chr) {
                        return chars.test(chr);
                    }
                });
        });
        return m;
    }

    // ---------------------------------------------------------------- char filters
    @Override
    public Map<String, AnalysisProvider<CharFilterFactory>> getCharFilters() {
        Map<String, AnalysisProvider<CharFilterFactory>> m = new TreeMap<>();
        m.put("html_strip", (is, env, name, s) -> charFilter(name, HTMLStripCharFilter::new));
        m.put("mapping", AnalysisPlugin.requiresAnalysisSettings((is, env, name, s) -> {
            List<String> rules = Analysis.getWordList(env, s, "mappings");
            if (rules == null) {
                throw new IllegalArgumentException("mapping requires either `mappings` or `mappings_path` to be configured");
            }
            NormalizeCharMap.Builder b = new NormalizeCharMap.Builder();
            for (String rule : rules) {
                int i = rule.indexOf("=>");
                if (i < 0) {
                    throw new IllegalArgumentException("Invalid mapping rule : [" + rule + "]");
                }
                b.add(rule.substring(0, i).trim(), rule.substring(i + 2).trim());
            }
            NormalizeCharMap map = b.build();
            return normalizingCharFilter(name, r -> new MappingCharFilter(map, r));
        }));
        m.put("pattern_replace", AnalysisPlugin.requiresAnalysisSettings((is, env, name, s) -> {
            String pattern = s.get("pattern");
            if (pattern == null) {
                throw new IllegalArgumentException("pattern is missing for [" + name + "] char filter of type 'pattern_replace'");
            }
            Pattern p = Pattern.compile(pattern);
            String replacement = s.get("replacement", "");
            return normalizingCharFilter(name, r -> new PatternReplaceCharFilter(p, replacement, r));
        }));
        return m;
    }

    // ---------------------------------------------------------------- analyzers
    @Override
    public Map<String, AnalysisProvider<AnalyzerProvider<? extends Analyzer>>> getAnalyzers() {
        Map<String, AnalysisProvider<AnalyzerProvider<? extends Analyzer>>> m = new TreeMap<>();
        m.put("english", (is, env, name, s) -> {
            CharArraySet stop = Analysis.parseStopWords(env, s, EnglishAnalyzer.ENGLISH_STOP_WORDS_SET);
            CharArraySet exclusion = Analysis.parseStemExclusion(s, CharArraySet.EMPTY_SET);
            EnglishAnalyzer analyzer = new EnglishAnalyzer(stop, exclusion);
            return new AbstractIndexAnalyzerProvider<Analyzer>(name, s) {
                @Override
                public Analyzer get() {
                    return analyzer;
                }
            };
        });
        return m;
    }

    // ---------------------------------------------------------------- helpers
    private static int flag(Settings s, String key, boolean dflt, int bit) {
        return s.getAsBoolean(key, dflt) ? bit : 0;
    }

    private static void checkNgramDiff(IndexSettings is, int min, int max) {
        int allowed = is.getMaxNgramDiff();
        if (max - min > allowed) {
            throw new IllegalArgumentException("The difference between max_gram and min_gram in NGram Tokenizer must be less than or equal to: ["
                + allowed + "] but was [" + (max - min) + "]. This limit can be set by changing the ["
                + IndexSettings.MAX_NGRAM_DIFF_SETTING.getKey() + "] index level setting.");
        }
    }

    private static IntPredicate tokenChars(List<String> classes) {
        if (classes == null || classes.isEmpty()) {
            return null;
        }
        IntPredicate p = c -> false;
        for (String cls : classes) {
            IntPredicate q = switch (cls.toLowerCase(Locale.ROOT)) {
                case "letter" -> Character::isLetter;
                case "digit" -> Character::isDigit;
                case "whitespace" -> Character::isWhitespace;
                case "punctuation" -> c -> switch (Character.getType(c)) {
                    case Character.START_PUNCTUATION, Character.END_PUNCTUATION, Character.OTHER_PUNCTUATION,
                         Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION,
                         Character.FINAL_QUOTE_PUNCTUATION -> true;
                    default -> false;
                };
                case "symbol" -> c -> switch (Character.getType(c)) {
                    case Character.CURRENCY_SYMBOL, Character.MATH_SYMBOL, Character.OTHER_SYMBOL, Character.MODIFIER_SYMBOL -> true;
                    default -> false;
                };
                default -> throw new IllegalArgumentException("token_chars class [" + cls + "] is not available on the local Parley node "
                    + "(letter, digit, whitespace, punctuation, symbol)");
            };
            p = p.or(q);
        }
        return p;
    }

    private static TokenFilterFactory filter(String name, Function<TokenStream, TokenStream> f) {
        return new AbstractTokenFilterFactory(name, Settings.EMPTY) {
            @Override
            public TokenStream create(TokenStream tokenStream) {
                return f.apply(tokenStream);
            }
        };
    }

    private static TokenFilterFactory normalizing(String name, Function<TokenStream, TokenStream> f) {
        return new NormalizingFilter(name, f);
    }

    private static final class NormalizingFilter extends AbstractTokenFilterFactory implements NormalizingTokenFilterFactory {
        private final Function<TokenStream, TokenStream> f;

        NormalizingFilter(String name, Function<TokenStream, TokenStream> f) {
            super(name, Settings.EMPTY);
            this.f = f;
        }

        @Override
        public TokenStream create(TokenStream tokenStream) {
            return f.apply(tokenStream);
        }
    }

    private static TokenizerFactory tokenizer(IndexSettings is, Settings s, String name, java.util.function.Supplier<Tokenizer> f) {
        return new AbstractTokenizerFactory(is, s, name) {
            @Override
            public Tokenizer create() {
                return f.get();
            }
        };
    }

    private static CharFilterFactory charFilter(String name, Function<Reader, Reader> f) {
        return new AbstractCharFilterFactory(name) {
            @Override
            public Reader create(Reader reader) {
                return f.apply(reader);
            }
        };
    }

    private static CharFilterFactory normalizingCharFilter(String name, Function<Reader, Reader> f) {
        return new NormalizingChar(name, f);
    }

    private static final class NormalizingChar extends AbstractCharFilterFactory implements NormalizingCharFilterFactory {
        private final Function<Reader, Reader> f;

        NormalizingChar(String name, Function<Reader, Reader> f) {
            super(name);
            this.f = f;
        }

        @Override
        public Reader create(Reader reader) {
            return f.apply(reader);
        }
    }
}
