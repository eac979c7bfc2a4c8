// Kafka's own OAuth token validator (signature against the JWKS, exp, iat, aud, iss, sub),
// which also logs the SASL extensions each client sends: stock Kafka accepts them silently,
// and a test must see that the exporter sends Confluent Cloud's logicalCluster and
// identityPoolId. Compiled by tests/support/kafka.rs onto the brokers' classpath.

import java.io.IOException;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerExtensionsValidatorCallback;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

public class ExtensionsLoggingValidator extends OAuthBearerValidatorCallbackHandler {
    private static final Logger log = LoggerFactory.getLogger(ExtensionsLoggingValidator.class);

    @Override
    public void handle(Callback[] callbacks) throws IOException, UnsupportedCallbackException {
        for (Callback callback : callbacks) {
            if (callback instanceof OAuthBearerExtensionsValidatorCallback extensions) {
                log.info("SASL extensions from principal={}: {}",
                        extensions.token().principalName(), extensions.inputExtensions().map());
            }
        }
        super.handle(callbacks);
    }
}
