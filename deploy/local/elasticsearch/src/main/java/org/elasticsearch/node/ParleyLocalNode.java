package org.elasticsearch.node;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;
import org.elasticsearch.transport.netty4.Netty4Plugin;
import dev.parley.local.es.CommonAnalysisSubsetPlugin;
import dev.parley.local.es.RootInfoPlugin;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;

/**
 * Starts one real Elasticsearch node in this JVM (the stock server code; only the
 * launcher differs from the tarball's, which is not on Maven Central).
 *
 * Usage: java -cp ... org.elasticsearch.node.ParleyLocalNode ES_HOME
 * ES_HOME/config/elasticsearch.yml and ES_HOME/config/log4j2.properties are read.
 */
public final class ParleyLocalNode {
    private static final List<Class<? extends Plugin>> MODULES = List.of(Netty4Plugin.class, RootInfoPlugin.class, CommonAnalysisSubsetPlugin.class);

    private ParleyLocalNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: ParleyLocalNode ES_HOME");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path config = home.resolve("config");
        Settings input = Settings.builder().put("path.home", home.toString()).build();

        LogConfigurator.registerErrorListener();
        Environment env = InternalSettingsPreparer.prepareEnvironment(input, Map.of(), config, () -> "parley-es");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(env.settings()));
        LogConfigurator.configure(env, false);

        PluginsLoader loader = PluginsLoader.createPluginsLoader(Set.of(), Set.of(), Map.of(), false);
        NodeServiceProvider services = new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment environment, PluginsLoader pluginsLoader) {
                return new ClasspathPluginsService(environment.settings(), environment.configDir(), pluginsLoader, MODULES);
            }
        };
        Node node = new Node(NodeConstruction.prepareConstruction(env, loader, services, true));

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "parley-es-shutdown"));

        node.start();
        stopped.await();
    }
}
