import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;

/**
 * Prints the API version ranges a Kafka broker listener advertises in ApiVersionsResponse,
 * computed by the released kafka-clients jar on the class path: one "key min max name" line each.
 *
 * Usage: java -cp kafka-clients-X.jar:. ApiVersionsDump ZK_BROKER|BROKER
 *
 * ZK_BROKER (2.8 to 3.9): the ZooKeeper broker without forwarding (the default) calls
 * ApiVersionsResponse.filterApis(record version V2, ZK_BROKER[, unstable=false[, telemetry=false]]).
 * BROKER (4.x): the KRaft broker intersects its forwardable APIs with the active controller's
 * ranges, ApiVersionsResponse.controllerApiVersions(controller's versions, BROKER, false, false),
 * the controller advertising collectApis(CONTROLLER, apisForListener(CONTROLLER), false).
 * Unstable last versions and the client telemetry APIs (no telemetry receiver configured) are
 * left out, as a broker with default settings does.
 */
public final class ApiVersionsDump {
    public static void main(String[] args) throws Exception {
        Class<?> response = Class.forName("org.apache.kafka.common.requests.ApiVersionsResponse");
        Class<?> listenerTypes = Class.forName("org.apache.kafka.common.message.ApiMessageType$ListenerType");
        Object listener = enumValue(listenerTypes, args[0]);
        Collection<?> apis;
        if (args[0].equals("ZK_BROKER")) {
            Class<?> recordVersions = Class.forName("org.apache.kafka.common.record.RecordVersion");
            Object v2 = enumValue(recordVersions, "V2");
            Method m4 = find(response, "filterApis", recordVersions, listenerTypes, boolean.class, boolean.class);
            Method m3 = find(response, "filterApis", recordVersions, listenerTypes, boolean.class);
            if (m4 != null) {
                apis = (Collection<?>) m4.invoke(null, v2, listener, false, false);
            } else if (m3 != null) {
                apis = (Collection<?>) m3.invoke(null, v2, listener, false);
            } else {
                apis = (Collection<?>) response.getMethod("filterApis", recordVersions, listenerTypes).invoke(null, v2, listener);
            }
        } else {
            Class<?> apiKeys = Class.forName("org.apache.kafka.common.protocol.ApiKeys");
            Object controller = enumValue(listenerTypes, "CONTROLLER");
            Object controllerKeys = apiKeys.getMethod("apisForListener", listenerTypes).invoke(null, controller);
            Collection<?> controllerApis = (Collection<?>) response
                .getMethod("collectApis", listenerTypes, java.util.Set.class, boolean.class)
                .invoke(null, controller, controllerKeys, false);
            Class<?> nodeApiVersions = Class.forName("org.apache.kafka.clients.NodeApiVersions");
            Object node = nodeApiVersions.getConstructor(Collection.class, Collection.class)
                .newInstance(new ArrayList<Object>(controllerApis), Collections.emptyList());
            apis = (Collection<?>) response
                .getMethod("controllerApiVersions", nodeApiVersions, listenerTypes, boolean.class, boolean.class)
                .invoke(null, node, listener, false, false);
        }
        List<String> lines = new ArrayList<>();
        for (Object api : apis) {
            Class<?> c = api.getClass();
            short key = (short) c.getMethod("apiKey").invoke(api);
            short min = (short) c.getMethod("minVersion").invoke(api);
            short max = (short) c.getMethod("maxVersion").invoke(api);
            String name = (String) apiKeys(c).getField("name").get(apiKeys(c).getMethod("forId", int.class).invoke(null, (int) key));
            lines.add(key + " " + min + " " + max + " " + name.replace(' ', '_'));
        }
        for (String line : lines) {
            System.out.println(line);
        }
    }

    private static Class<?> apiKeys(Class<?> context) throws ClassNotFoundException {
        return Class.forName("org.apache.kafka.common.protocol.ApiKeys", true, context.getClassLoader());
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static Object enumValue(Class<?> type, String name) {
        return Enum.valueOf((Class) type, name);
    }

    private static Method find(Class<?> type, String name, Class<?>... params) {
        try {
            return type.getMethod(name, params);
        } catch (NoSuchMethodException e) {
            return null;
        }
    }
}
